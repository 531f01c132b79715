use serde::{Deserialize, Serialize};
use typed_session::SessionSchema;

#[derive(Clone, Serialize, Deserialize)]
struct Token(String);

#[derive(SessionSchema)]
struct Shop {
    token: Token,
}

fn main() {}
