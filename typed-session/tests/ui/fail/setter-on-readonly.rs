use typed_session::{SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Auth {
    #[session(readonly)]
    user_id: Option<u64>,
}

fn main() {
    let session = TypedSession::detached(Auth { user_id: None });
    session.set_user_id(Some(1));
}
