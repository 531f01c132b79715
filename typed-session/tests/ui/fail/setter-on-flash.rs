use typed_session::{Flash, SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Site {
    #[session(flash)]
    notices: Flash<String>,
}

fn main() {
    let session = TypedSession::detached(Site { notices: Flash::default() });
    session.set_notices(Flash::default());
}
