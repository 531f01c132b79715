//! Unit tests of cookie mode's sealing.

use rand::{Rng, SeedableRng};

use super::format::{take_delta, take_varint};
use super::*;
use crate::frame::Subject;
use crate::keys::{Purpose, SigningKey};

fn secret(s: &str) -> SigningKey {
    SigningKey::new(s.as_bytes().to_vec()).unwrap()
}

fn named(secrets: &[&str], name: &str, compress: bool) -> SealedCookie {
    let keys: Vec<SigningKey> = secrets.iter().map(|s| secret(s)).collect();
    SealedCookie::new(KeyRing::derive(&keys, Purpose::Sealing), name, compress)
}

fn backend(secrets: &[&str]) -> SealedCookie {
    named(secrets, "session", false)
}

const A: &str = "the first test secret, at least 32 bytes";
const B: &str = "the second test secret, 32 bytes or more";

fn meta() -> Meta {
    Meta {
        created: 1_700_000_000_000,
        touched: 1_700_000_000_500,
        max_age: Some(3600),
        subject: Some(Subject {
            digest: [9; 16],
            since: 1_700_000_000_100,
        }),
    }
}

fn payload(data: &str) -> Payload {
    Payload {
        version: 3,
        meta: meta(),
        fields: data.as_bytes().to_vec(),
        expires_at: 1_700_000_900_000,
        copy: None,
        established: false,
    }
}

/// A value in format 1, as the previous release sealed it.
fn seal_format_1(b: &SealedCookie, id: &SessionId, p: &Payload, deflate: bool) -> String {
    let mut body = Vec::new();
    body.extend_from_slice(&p.version.to_be_bytes());
    body.extend_from_slice(&p.meta.created.to_be_bytes());
    body.extend_from_slice(&p.meta.touched.to_be_bytes());
    body.extend_from_slice(&p.meta.max_age.unwrap_or(u64::MAX).to_be_bytes());
    match p.meta.subject {
        None => body.push(1),
        Some(s) => {
            body.push(2);
            body.extend_from_slice(&s.digest);
            body.extend_from_slice(&s.since.to_be_bytes());
        }
    }
    body.extend_from_slice(&p.fields);
    if deflate {
        body = miniz_oxide::deflate::compress_to_vec(&body, 6);
    }
    let key = b.keys.current().unwrap();
    let nonce = [7u8; 24];
    let mut buf = vec![FORMAT_1, key.id];
    buf.extend_from_slice(&nonce);
    buf.push(u8::from(deflate));
    buf.extend_from_slice(&p.expires_at.to_be_bytes());
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(&body);
    use chacha20poly1305::KeyInit as _;
    use chacha20poly1305::aead::AeadInOut as _;
    let tag = chacha20poly1305::XChaCha20Poly1305::new(&key.key.into())
        .encrypt_inout_detached(
            &chacha20poly1305::XNonce::from(nonce),
            &b.aad[0],
            (&mut buf[FORMAT_1_PREFIX_BYTES..]).into(),
        )
        .unwrap();
    buf.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(&buf)
}

fn open_err(b: &SealedCookie, v: &str) -> Refused {
    match b.open(v) {
        Err(r) => r,
        Ok(o) => panic!("opened: {o:?}"),
    }
}

#[test]
fn seal_then_open_gives_the_record_back() {
    let b = backend(&[A]);
    let id = SessionId::random();
    let data = r#"{"cart":[1,2,3],"name":"Ada"}"#;
    for subject in [true, false] {
        let mut p = payload(data);
        if !subject {
            p.meta.subject = None;
            p.meta.max_age = None;
        }
        let value = b.seal(&id, &p).unwrap();
        let opened = b.open(&value).unwrap();
        assert_eq!(
            opened.id == id,
            subject,
            "the id is sealed with a subject only"
        );
        assert_eq!(opened.expires_at, p.expires_at);
        assert_eq!(opened.version, p.version);
        assert_eq!(opened.meta, p.meta);
        assert_eq!(opened.fields, p.fields, "the fields round-trip");
        assert!(!opened.old_key);
        // A fresh nonce per seal: the same record never seals the same way.
        assert_ne!(b.seal(&id, &p).unwrap(), value);
        // Compact: 26-byte prefix, 16-byte tag, and a lead of a flags
        // byte and varints (6-byte deadline, 3-byte lifetime, 2-byte
        // touch, 1-byte version, 2-byte max-age), plus the id, the
        // subject's digest and a 2-byte since with a subject.
        let lead = match subject {
            true => 1 + 6 + 3 + 2 + 1 + 2 + 16 + 16 + 2,
            false => 1 + 6 + 3 + 2 + 1,
        };
        let overhead = PREFIX_BYTES + lead + TAG_BYTES;
        assert_eq!(value.len(), base64_len(overhead + data.len()));
    }
}

#[test]
fn values_of_the_first_format_still_open() {
    for compress in [false, true] {
        let b = named(&[A], "session", compress);
        let id = SessionId::random();
        let p = payload(r#"{"cart":[1,2,3],"name":"Ada"}"#);
        let value = seal_format_1(&b, &id, &p, compress);
        let opened = b.open(&value).unwrap();
        assert_eq!(opened.id, id);
        assert_eq!(opened.expires_at, p.expires_at);
        assert_eq!((opened.version, opened.meta), (p.version, p.meta));
        assert_eq!(opened.fields, p.fields);
    }
}

#[test]
fn varints_round_trip_at_their_edges() {
    for n in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, n);
        let mut rest = &out[..];
        assert_eq!(take_varint(&mut rest), Some(n));
        assert!(rest.is_empty());
        for base in [0, 1_700_000_000_000, u64::MAX] {
            let mut out = Vec::new();
            put_delta(&mut out, n, base);
            let mut rest = &out[..];
            assert_eq!(take_delta(&mut rest, base), Some(n));
        }
    }
    // Eleven bytes, or a tenth byte over the top bit: refused.
    let mut rest = &[0xffu8; 11][..];
    assert_eq!(take_varint(&mut rest), None);
    let mut rest = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..];
    assert_eq!(take_varint(&mut rest), None);
}

#[test]
fn each_refusal_has_its_reason() {
    let b = backend(&[A]);
    let value = b
        .seal(&SessionId::random(), &payload(r#"{"n":1}"#))
        .unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
    let enc = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);

    assert_eq!(open_err(&b, "not*base64"), Refused::NotBase64);
    assert_eq!(open_err(&b, &format!("{value}=")), Refused::NotBase64);
    assert_eq!(
        open_err(&b, &format!("+{}", &value[1..])),
        Refused::NotBase64
    );
    assert_eq!(open_err(&b, &value[..40]), Refused::Truncated);
    assert_eq!(open_err(&b, ""), Refused::Truncated);
    let mut other_format = raw.clone();
    other_format[0] = 3;
    assert_eq!(open_err(&b, &enc(&other_format)), Refused::UnknownFormat);
    let mut other_key = raw.clone();
    other_key[1] = other_key[1].wrapping_add(1);
    assert_eq!(open_err(&b, &enc(&other_key)), Refused::UnknownKey);
    let mut trailing = raw.clone();
    trailing.push(0);
    assert_eq!(open_err(&b, &enc(&trailing)), Refused::Forged);
    let mut cut = raw.clone();
    cut.pop();
    assert_eq!(open_err(&b, &enc(&cut)), Refused::Forged);
    // Every single flipped bit past the key id is caught by the tag.
    for i in 2..raw.len() {
        for bit in 0..8 {
            let mut t = raw.clone();
            t[i] ^= 1 << bit;
            assert_eq!(
                open_err(&b, &enc(&t)),
                Refused::Forged,
                "byte {i} bit {bit}"
            );
        }
    }
    // Another secret whose key id happens to differ, or another cookie name.
    let other = backend(&[B]);
    assert!(other.open(&value).is_err());
    let renamed = named(&[A], "__Host-session", false);
    assert_eq!(open_err(&renamed, &value), Refused::Forged);
}

#[test]
fn rotation_opens_old_values_and_seals_with_the_new_key() {
    let old = backend(&[A]);
    let rotated = backend(&[B, A]);
    let retired = backend(&[B]);
    let id = SessionId::random();
    let value = old.seal(&id, &payload("{}")).unwrap();
    let opened = rotated.open(&value).unwrap();
    assert!(opened.old_key, "re-seal under the current key");
    let resealed = rotated.seal(&id, &payload("{}")).unwrap();
    assert!(!rotated.open(&resealed).unwrap().old_key);
    assert!(retired.open(&resealed).is_ok());
    assert!(
        retired.open(&value).is_err(),
        "the retired key opens nothing"
    );
}

/// Two secrets whose derived key ids collide (1 in 256): opening tries
/// both, and a failed attempt does not spoil the bytes for the next.
#[test]
fn colliding_key_ids_still_open() {
    let base = backend(&[A]);
    let id_a = base.keys.current().map(|k| k.id);
    let other = (0..10_000)
        .map(|i| format!("a candidate secret number {i:05}, 32+ bytes"))
        .find(|s| backend(&[s.as_str()]).keys.current().map(|k| k.id) == id_a)
        .expect("a collision in 10,000 secrets");
    let value = base.seal(&SessionId::random(), &payload("{}")).unwrap();
    let both = backend(&[other.as_str(), A]);
    let opened = both.open(&value).unwrap();
    assert!(
        opened.old_key,
        "opened by the second key after the first failed"
    );
}

#[test]
fn the_cookie_budget_is_a_typed_error_and_compression_only_when_smaller() {
    let b = backend(&[A]);
    let id = SessionId::random();
    let big = format!(r#"{{"notes":"{}"}}"#, "x".repeat(4000));
    match b.seal(&id, &payload(&big)) {
        Err(Error::CookieTooLarge { size, limit }) => {
            assert_eq!(limit, 4096);
            assert!(size > 4096, "{size}");
        }
        other => panic!("{other:?}"),
    }
    let b = named(&[A], "session", true);
    let sealed = b.seal(&id, &payload(&big)).unwrap();
    assert!(
        sealed.len() < 400,
        "4 KB of one letter deflates: {}",
        sealed.len()
    );
    let opened = b.open(&sealed).unwrap();
    assert_eq!(opened.fields, payload(&big).fields);
    // Incompressible data is sealed as is (flag clear): no growth.
    let noise: String = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..300)
            .map(|_| char::from(b'a' + rng.random_range(0..26)))
            .collect()
    };
    let small = format!(r#"{{"n":"{noise}"}}"#);
    let plain = backend(&[A]).seal(&id, &payload(&small)).unwrap();
    let maybe = b.seal(&id, &payload(&small)).unwrap();
    assert!(maybe.len() <= plain.len());
}

/// Bounded random mutation of sealed values: never a panic, never an
/// accepted value other than the exact original.
#[test]
fn random_mutations_never_open() {
    let b = backend(&[A, B]);
    let value = b
        .seal(&SessionId::random(), &payload(r#"{"cart":[1,2,3]}"#))
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ea1);
    let alphabet = b"AZaz09-_+/=.%\x00\x7f";
    for _ in 0..20_000 {
        let mut bytes = value.as_bytes().to_vec();
        match rng.random_range(0..4) {
            0 => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = alphabet[rng.random_range(0..alphabet.len())];
            }
            1 => bytes.truncate(rng.random_range(0..bytes.len())),
            2 => {
                let i = rng.random_range(0..=bytes.len());
                bytes.insert(i, alphabet[rng.random_range(0..alphabet.len())]);
            }
            _ => bytes.extend(std::iter::repeat_n(b'A', rng.random_range(1..5000))),
        }
        let text = String::from_utf8_lossy(&bytes);
        if text != value {
            assert!(b.open(&text).is_err(), "{text}");
        }
    }
}
