// A crate that re-exports typed_session under another path.
mod reexport {
    pub use typed_session as sessions;
}

use typed_session::SessionSchema;

#[derive(SessionSchema)]
#[session(crate = "reexport::sessions")]
struct Counter {
    n: u32,
}

fn main() {
    let s = typed_session::TypedSession::detached(Counter { n: 1 });
    s.set_n(2).unwrap();
    assert_eq!(s.n(), 2);
}
