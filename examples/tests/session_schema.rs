//! The demo session's stored shape is the one recorded for its version
//! (`session-schemas/ShopSession/v2.shape`), and the recorded first
//! version (`v1.shape`) comes through the migration: a change to the
//! session's stored shape without a version bump fails here, before it
//! can empty every stored cart.

use typed_session_examples::session::ShopSession;

#[test]
fn session_shape_is_recorded() {
    typed_session::schema::assert_recorded::<ShopSession>();
}
