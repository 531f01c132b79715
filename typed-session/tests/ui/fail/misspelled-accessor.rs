use typed_session::{SessionSchema, TypedSession};

#[derive(SessionSchema)]
struct Shop {
    cart: Vec<u32>,
}

fn main() {
    let session = TypedSession::detached(Shop { cart: vec![] });
    let _ = session.carts();
}
