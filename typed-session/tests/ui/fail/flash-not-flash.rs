use typed_session::{Flash, SessionSchema};

#[derive(SessionSchema)]
struct Site {
    #[session(flash)]
    notices: Vec<String>,
    alerts: Flash<String>,
}

fn main() {}
