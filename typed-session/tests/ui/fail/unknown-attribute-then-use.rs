// An attribute mistake is reported once; the accessors the code uses still
// exist, so no "no method named ..." error follows per use.
use typed_session::{Flash, SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Shop {
    #[session(read_only)]
    user_id: Option<u64>,
    cart: Vec<u32>,
    #[session(flash)]
    notices: Flash<String>,
}

fn main() {
    let session = TypedSession::detached(Shop { user_id: None, cart: vec![], notices: Flash::default() });
    let _ = session.user_id();
    session.set_user_id(Some(1)).unwrap();
    session.update_cart(|c| c.push(1)).unwrap();
    let _ = session.with_cart(|c| c.len());
    let _ = session.take_cart();
    session.notices().push("hi".into());
}
