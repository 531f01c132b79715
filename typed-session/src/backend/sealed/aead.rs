//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): HChaCha20 derives a subkey
//! from the key and the nonce's first 16 bytes, and ChaCha20-Poly1305
//! (RFC 8439, ring's implementation) seals under it with the nonce's last 8
//! bytes after four zero bytes. The same bytes as any XChaCha20-Poly1305
//! (a test checks it against RustCrypto's), at the speed of ring's AEAD.

use chacha20::{R20, hchacha};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

pub(super) const TAG_BYTES: usize = 16;

/// The ChaCha20-Poly1305 key and nonce that XChaCha20's `nonce` stands for.
fn inner(key: &[u8; 32], nonce: &[u8; 24]) -> Option<(LessSafeKey, Nonce)> {
    let mut head = [0u8; 16];
    head.copy_from_slice(&nonce[..16]);
    let subkey = hchacha::<R20>(&(*key).into(), &head.into());
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &subkey).ok()?);
    let mut tail = [0u8; 12];
    tail[4..].copy_from_slice(&nonce[16..]);
    Some((key, Nonce::assume_unique_for_key(tail)))
}

/// Encrypts `in_out` in place; the tag.
pub(super) fn seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    in_out: &mut [u8],
) -> Option<[u8; TAG_BYTES]> {
    let (key, nonce) = inner(key, nonce)?;
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
        .ok()?;
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(tag.as_ref());
    Some(out)
}

/// Checks `tag` and decrypts `in_out` in place. On failure the bytes are
/// not the ciphertext any more: a caller trying another key keeps a copy.
pub(super) fn open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; TAG_BYTES],
) -> bool {
    let Some((key, nonce)) = inner(key, nonce) else {
        return false;
    };
    key.open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(*tag), in_out, 0..)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The same bytes as RustCrypto's XChaCha20-Poly1305, both ways, for
    /// random keys, nonces, associated data and lengths.
    #[test]
    fn agrees_with_an_independent_implementation() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xc4a);
        for round in 0..500 {
            let key: [u8; 32] = rng.random();
            let nonce: [u8; 24] = rng.random();
            let aad: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
            let plain: Vec<u8> = (0..rng.random_range(0..600))
                .map(|_| rng.random())
                .collect();

            let mut ours = plain.clone();
            let tag = seal(&key, &nonce, &aad, &mut ours).unwrap();
            let mut theirs = plain.clone();
            let their_tag = XChaCha20Poly1305::new(&key.into())
                .encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut theirs[..]).into())
                .unwrap();
            assert_eq!(ours, theirs, "round {round}");
            assert_eq!(&tag[..], &their_tag[..], "round {round}");

            assert!(open(&key, &nonce, &aad, &mut ours, &tag));
            assert_eq!(ours, plain);
            let mut forged = theirs.clone();
            if let Some(b) = forged.first_mut() {
                *b ^= 1;
                assert!(!open(&key, &nonce, &aad, &mut forged, &tag));
            }
        }
    }
}
