use typed_session::{Flash, SessionSchema};

#[derive(SessionSchema)]
#[session(version = 0, colour = "red", on_invalid = "reset")]
struct Shop {
    #[session(on_invalid = "explode")]
    cart: Vec<u32>,
    #[session(flash = true)]
    notices: Flash<String>,
    #[session(skip, validate = check, version = 2)]
    scratch: u32,
    #[session(rename = "cart")]
    basket: Vec<u32>,
}

fn main() {}
