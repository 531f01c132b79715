use typed_session::TypedSession;

struct Plain {
    cart: Vec<u32>,
}

async fn handler(_session: TypedSession<Plain>) {}

fn main() {
    let _ = handler;
}
