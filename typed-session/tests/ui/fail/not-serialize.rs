use typed_session::SessionSchema;

#[derive(Clone, Default)]
struct Opaque {
    handle: u32,
}

#[derive(SessionSchema)]
struct Shop {
    cart: Vec<u32>,
    opaque: Opaque,
}

fn main() {}
