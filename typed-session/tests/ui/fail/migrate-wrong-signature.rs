use typed_session::SessionSchema;

fn v1_to_v2(data: String) -> String {
    data
}

#[derive(SessionSchema)]
#[session(version = 2, migrate(from = 1, with = v1_to_v2))]
struct Shop {
    cart: Vec<u32>,
}

fn main() {}
