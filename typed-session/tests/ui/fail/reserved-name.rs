use typed_session::SessionSchema;

#[derive(SessionSchema)]
struct Shop {
    id: u64,
    update: bool,
}

fn main() {}
