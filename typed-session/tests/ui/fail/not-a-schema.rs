// `TypedSession<T>` of a type without the derive. Every copy of the error
// carries the library's message ("`Plain` is not a session schema") and its
// note ("add `#[derive(SessionSchema)]`"). What rustc still repeats, and the
// library cannot switch off: one copy for the type in the signature, then
// one per place the async fn's desugaring needs the argument's size (the
// argument, the local it moves into, the future's state): 4 here. One of
// those carries rustc's generic advice for unsized arguments ("borrowed
// types always have a known size"), which is not a fix here.
use typed_session::TypedSession;

struct Plain {
    cart: Vec<u32>,
}

async fn handler(_session: TypedSession<Plain>) {}

fn main() {
    let _ = handler;
}
