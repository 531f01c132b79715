use typed_session::SessionSchema;

fn short(cart: Vec<u32>) -> bool {
    cart.len() < 10
}

fn whole(_: &Shop) -> bool {
    true
}

#[derive(SessionSchema)]
#[session(validate = whole)]
struct Shop {
    #[session(validate = short)]
    cart: Vec<u32>,
}

fn main() {}
