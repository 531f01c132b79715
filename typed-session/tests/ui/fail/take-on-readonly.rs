// `take_x` of a read-only field takes no argument, like the real one: the
// call gets the read-only note, not an argument-count error.
use typed_session::{SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Auth {
    #[session(readonly)]
    user_id: Option<u64>,
}

fn main() {
    let session = TypedSession::detached(Auth { user_id: None });
    let taken: Option<u64> = session.take_user_id();
    let _ = taken;
}
