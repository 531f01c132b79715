use typed_session::SessionSchema;

#[derive(SessionSchema)]
struct Shop(Vec<u32>, u64);

fn main() {}
