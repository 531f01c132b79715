// A blocked setter has the real setter's signature: `?` and `.unwrap()`
// after it add no second error; only the read-only / flash note shows.
use typed_session::{Flash, SessionSchema, TypedSession, ValidationError};

#[derive(SessionSchema)]
struct Auth {
    #[session(readonly)]
    user_id: Option<u64>,
    #[session(flash)]
    notices: Flash<String>,
}

fn login(session: &TypedSession<Auth>) -> Result<(), ValidationError> {
    session.set_user_id(Some(1))?;
    Ok(())
}

fn main() {
    let session = TypedSession::detached(Auth { user_id: None, notices: Flash::default() });
    let _ = login(&session);
    let n = session.update_notices(|n| n.pending_len()).unwrap();
    let _ = n + 1;
}
