use serde_json::Value;
use typed_session::{MigrationError, SessionSchema};

fn v1(data: Value) -> Result<Value, MigrationError> {
    Ok(data)
}

#[derive(SessionSchema)]
#[session(version = 2, migrate(from = 1, with = v1), migrate(from = 1, with = v1), migrate(from = 2, with = v1))]
struct Shop {
    cart: Vec<u32>,
}

fn main() {}
