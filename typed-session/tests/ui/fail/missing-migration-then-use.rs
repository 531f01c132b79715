// A gap in the migration chain is one error; the accessors still exist.
use typed_session::serde_json::Value;
use typed_session::{MigrationError, SessionSchema, TypedSession};

fn v1(data: Value) -> Result<Value, MigrationError> {
    Ok(data)
}

#[derive(SessionSchema)]
#[session(version = 3, migrate(from = 1, with = v1))]
struct Shop {
    cart: Vec<u32>,
}

fn main() {
    let session = TypedSession::detached(Shop { cart: vec![] });
    session.update_cart(|c| c.push(1)).unwrap();
    let _ = session.cart();
}
