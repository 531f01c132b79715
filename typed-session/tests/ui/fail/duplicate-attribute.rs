use typed_session::SessionSchema;

fn check(_: &Vec<u32>) -> Result<(), String> {
    Ok(())
}

#[derive(SessionSchema)]
#[session(version = 1, version = 1)]
struct Shop {
    #[session(validate = check)]
    #[session(validate = check)]
    cart: Vec<u32>,
    #[session(readonly, readonly)]
    user: u64,
}

fn main() {}
