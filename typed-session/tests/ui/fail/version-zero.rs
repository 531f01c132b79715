use typed_session::SessionSchema;

#[derive(SessionSchema)]
#[session(version = 0)]
struct Shop {
    cart: Vec<u32>,
}

fn main() {}
