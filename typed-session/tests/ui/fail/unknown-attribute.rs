use typed_session::SessionSchema;

#[derive(SessionSchema)]
#[session(verison = 2)]
struct Shop {
    #[session(valdate = check)]
    cart: Vec<u32>,
}

fn main() {}
