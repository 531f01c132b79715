use typed_session::SessionSchema;

#[derive(SessionSchema)]
enum Step {
    One,
    Two,
}

fn main() {}
