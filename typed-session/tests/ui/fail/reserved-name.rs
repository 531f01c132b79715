use typed_session::SessionSchema;

// Each of these fields would have an accessor shadowed by a method of
// `TypedSession` (or its handle, or a prelude trait): each is one error.
#[derive(SessionSchema)]
struct Shop {
    id: u64,
    update: bool,
    expires_at: u64,
    expiry: u64,
    export: String,
    subject: String,
    clone: u8,
}

fn main() {}
