//! The cookie-mode harness of the shared suites (feature `cookie-store`).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use typed_session::SessionLayer;

use crate::common::harness::Harness;

/// The encrypted-cookie mode: nothing on the server to count or edit.
#[derive(Clone)]
pub struct SealedCookie;

impl Harness for SealedCookie {
    fn layer(&self) -> SessionLayer {
        SessionLayer::encrypted_cookie(
            typed_session::SigningKey::new(
                b"the test suite's cookie sealing secret, 32+ bytes".to_vec(),
            )
            .unwrap(),
        )
    }

    async fn count(&self) -> Option<usize> {
        None
    }

    async fn delete(&self, _: &str) -> bool {
        false
    }

    async fn rewrite(&self, _: &str, _: fn(String) -> String) -> bool {
        false
    }

    async fn plant(&self, _: &str, _: Vec<u8>) -> bool {
        false
    }

    fn keeps_records(&self) -> bool {
        false
    }
}
