// A `Flash<T>` field without `#[session(flash)]` is one error; using the
// field's accessor adds none.
use typed_session::{Flash, SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Site {
    notices: Flash<String>,
}

fn main() {
    let session = TypedSession::detached(Site { notices: Flash::default() });
    session.notices().push("saved".into());
}
