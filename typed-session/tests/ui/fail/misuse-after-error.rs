// One attribute mistake gives one error, not follow-on errors wherever the
// struct is used as a session.
use typed_session::{SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Shop {
    #[session(readonly = yes)]
    user_id: u64,
}

fn takes(_: TypedSession<Shop>) {}

fn main() {
    let _ = takes;
}
