use typed_session::{SessionSchema, SessionView, TypedSession};

#[derive(SessionSchema)]
struct Shop {
    cart: Vec<u32>,
}

fn handler(view: SessionView<Shop>) {
    let _ = view.set_cart(vec![1]);
    let _ = view.update_cart(|cart| cart.clear());
}

fn main() {
    handler(TypedSession::detached(Shop { cart: vec![] }).view());
}
