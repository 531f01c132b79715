//! Behaviour of derived sessions without HTTP: accessors, validation and
//! rollback, `on_invalid` policies, migrations, flash messages.

#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use typed_session::{Error, Flash, LoadError, MigrationError, SessionSchema, TypedSession};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: u32,
    qty: u32,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
enum Registration {
    #[default]
    NotStarted,
    Step1 {
        email: String,
    },
    Complete,
}

fn valid_user_id(id: &Option<u64>) -> Result<(), String> {
    match id {
        Some(0) => Err("user id 0 is reserved".into()),
        _ => Ok(()),
    }
}

fn cart_within_limit(cart: &[Item]) -> Result<(), String> {
    if cart.len() <= 3 {
        Ok(())
    } else {
        Err(format!("{} items is more than 3", cart.len()))
    }
}

fn positive_qty(cart: &[Item]) -> Result<(), &'static str> {
    if cart.iter().all(|i| i.qty > 0) {
        Ok(())
    } else {
        Err("quantities must be positive")
    }
}

fn theme_default() -> String {
    "light".to_owned()
}

fn no_cart_when_complete(shop: &Shop) -> Result<(), String> {
    if shop.registration == Registration::Complete && shop.coupon.as_deref() == Some("FORBIDDEN") {
        Err("forbidden coupon".into())
    } else {
        Ok(())
    }
}

#[derive(SessionSchema)]
#[session(validate = no_cart_when_complete)]
struct Shop {
    #[session(readonly, validate = valid_user_id, on_invalid = "destroy")]
    user_id: Option<u64>,
    #[session(validate = cart_within_limit)]
    cart: Vec<Item>,
    #[session(flash)]
    notices: Flash<String>,
    registration: Registration,
    #[session(rename = "th", default = theme_default)]
    theme: String,
    #[session(validate = positive_qty, on_invalid = "reject")]
    saved: Vec<Item>,
    coupon: Option<String>,
    #[session(skip)]
    scratch: u32,
}

fn shop() -> TypedSession<Shop> {
    TypedSession::detached(Shop {
        user_id: Some(7),
        cart: vec![],
        notices: Flash::default(),
        registration: Registration::NotStarted,
        theme: theme_default(),
        saved: vec![],
        coupon: None,
        scratch: 0,
    })
}

fn item(sku: u32) -> Item {
    Item { sku, qty: 1 }
}

#[test]
fn getters_return_copies_and_borrow() {
    let s = shop();
    assert_eq!(s.user_id(), Some(7));
    assert_eq!(s.theme(), "light");
    assert_eq!(s.with_cart(|c| c.len()), 0);
    assert_eq!(s.read(|shop| shop.user_id), Some(7));
    assert_eq!(s.snapshot().theme, "light");
    assert!(!s.is_changed());
}

#[test]
fn set_validates_and_keeps_old_value_on_error() {
    let s = shop();
    s.set_cart(vec![item(1), item(2)]).unwrap();
    assert!(s.is_changed());
    let err = s
        .set_cart(vec![item(1), item(2), item(3), item(4)])
        .unwrap_err();
    assert_eq!(err.field(), Some("cart"));
    assert_eq!(err.message(), "4 items is more than 3");
    assert_eq!(s.cart(), vec![item(1), item(2)]);
}

#[test]
fn update_rolls_back_on_failed_validation() {
    let s = shop();
    s.set_cart(vec![item(1), item(2), item(3)]).unwrap();
    let err = s.update_cart(|c| c.push(item(4))).unwrap_err();
    assert_eq!(err.field(), Some("cart"));
    assert_eq!(s.with_cart(Vec::len), 3);
    let len = s
        .update_cart(|c| {
            c.pop();
            c.len()
        })
        .unwrap();
    assert_eq!(len, 2);
}

#[test]
fn take_leaves_the_default() {
    let s = shop();
    s.set_theme("dark".into()).unwrap();
    assert_eq!(s.take_theme(), "dark");
    assert_eq!(s.theme(), "light", "the field's own default = path");
    s.set_registration(Registration::Step1 {
        email: "a@b.c".into(),
    })
    .unwrap();
    assert_eq!(
        s.take_registration(),
        Registration::Step1 {
            email: "a@b.c".into()
        }
    );
    assert_eq!(s.registration(), Registration::NotStarted);
}

#[test]
fn whole_struct_update_validates_and_protects_readonly() {
    let s = shop();
    s.update(|shop| {
        shop.cart.push(item(9));
        shop.coupon = Some("HELLO".into());
    })
    .unwrap();
    assert_eq!(s.cart(), vec![item(9)]);

    let err = s.update(|shop| shop.user_id = Some(8)).unwrap_err();
    assert!(err.is_readonly());
    assert_eq!(s.user_id(), Some(7));

    let err = s
        .update(|shop| {
            shop.registration = Registration::Complete;
            shop.coupon = Some("FORBIDDEN".into());
        })
        .unwrap_err();
    assert_eq!(err.field(), None, "the struct rule failed");
    assert_eq!(s.registration(), Registration::NotStarted, "rolled back");
    assert_eq!(s.coupon(), Some("HELLO".into()));
}

#[test]
fn struct_rule_runs_on_field_writes() {
    let s = shop();
    s.set_coupon(Some("FORBIDDEN".into())).unwrap();
    assert!(s.set_registration(Registration::Complete).is_err());
    assert_eq!(s.registration(), Registration::NotStarted);
}

#[test]
fn readonly_is_set_by_regenerate_with() {
    let s = shop();
    s.regenerate_with(|shop| shop.user_id = Some(99)).unwrap();
    assert_eq!(s.user_id(), Some(99));
    let err = s
        .regenerate_with(|shop| shop.user_id = Some(0))
        .unwrap_err();
    assert_eq!(err.field(), Some("user_id"));
    assert_eq!(s.user_id(), Some(99));
}

#[test]
fn skip_fields_are_not_stored() {
    let s = shop();
    s.set_scratch(5).unwrap();
    assert!(
        !s.is_changed(),
        "skipped fields do not make the session dirty"
    );
    let stored: Value = serde_json::from_slice(&s.export().unwrap()).unwrap();
    assert!(stored["d"].get("scratch").is_none());
    assert_eq!(stored["d"]["th"], "light", "renamed key");
    let again = TypedSession::<Shop>::import(&s.export().unwrap()).unwrap();
    assert_eq!(again.scratch(), 0);
}

#[test]
fn flash_semantics_across_two_requests() {
    // Request 1: push for the next request; `now` is for this one only.
    let s = shop();
    s.notices().push("saved".into());
    s.notices().now("just now".into());
    assert_eq!(
        s.notices().drain(),
        vec!["just now".to_owned()],
        "pushes are for the next request"
    );
    let stored = s.export().unwrap();

    // Request 2: reading drains.
    let s = TypedSession::<Shop>::import(&stored).unwrap();
    assert_eq!(s.notices().peek(), vec!["saved".to_owned()]);
    assert!(!s.is_changed(), "peek does not consume");
    assert_eq!(s.notices().drain(), vec!["saved".to_owned()]);
    assert!(
        s.is_changed(),
        "draining consumes, so the session must be written"
    );
    assert!(s.notices().is_empty());
    let stored = s.export().unwrap();

    // Request 3: nothing left.
    let s = TypedSession::<Shop>::import(&stored).unwrap();
    assert!(s.notices().drain().is_empty());

    // keep(): read but kept for one more request.
    s.notices().push("again".into());
    let s = TypedSession::<Shop>::import(&s.export().unwrap()).unwrap();
    assert_eq!(s.notices().drain(), vec!["again".to_owned()]);
    s.notices().keep();
    let s = TypedSession::<Shop>::import(&s.export().unwrap()).unwrap();
    assert_eq!(s.notices().drain(), vec!["again".to_owned()]);
}

fn stored(v: u32, d: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"v": v, "c": 1, "t": 1, "d": d})).unwrap()
}

#[test]
fn on_invalid_reset_replaces_the_field_and_marks_it() {
    let bytes = stored(
        1,
        json!({"user_id": 7, "cart": [{"sku": 1, "qty": 1}, {"sku": 2, "qty": 1}, {"sku": 3, "qty": 1}, {"sku": 4, "qty": 1}], "th": 42}),
    );
    let s = TypedSession::<Shop>::import(&bytes).unwrap();
    assert_eq!(s.cart(), vec![], "too long: reset");
    assert_eq!(s.theme(), "light", "wrong type: reset to default = path");
    assert_eq!(s.user_id(), Some(7));
    assert!(s.is_changed(), "a reset field is written back");
}

#[test]
fn on_invalid_destroy_discards_the_session() {
    let bytes = stored(1, json!({"user_id": 0}));
    match TypedSession::<Shop>::import(&bytes) {
        Err(LoadError::Destroy(field)) => assert_eq!(field.field(), "user_id"),
        other => panic!("expected Destroy, got {:?}", other.map(|_| ())),
    }
    let bytes = stored(1, json!({"user_id": "not a number"}));
    assert!(matches!(
        TypedSession::<Shop>::import(&bytes),
        Err(LoadError::Destroy(_))
    ));
}

#[test]
fn on_invalid_reject_refuses() {
    let bytes = stored(1, json!({"saved": [{"sku": 1, "qty": 0}]}));
    match TypedSession::<Shop>::import(&bytes) {
        Err(LoadError::Reject(field)) => assert_eq!(field.field(), "saved"),
        other => panic!("expected Reject, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn struct_rule_failing_on_load_destroys() {
    let bytes = stored(
        1,
        json!({"registration": "Complete", "coupon": "FORBIDDEN"}),
    );
    assert!(matches!(
        TypedSession::<Shop>::import(&bytes),
        Err(LoadError::Destroy(_))
    ));
}

#[test]
fn missing_and_unknown_keys() {
    let bytes = stored(1, json!({"user_id": 3, "gone": true}));
    let s = TypedSession::<Shop>::import(&bytes).unwrap();
    assert_eq!(s.user_id(), Some(3));
    assert_eq!(s.theme(), "light");
    assert!(!s.is_changed());
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    for bad in [
        &b""[..],
        b"{",
        b"null",
        b"[]",
        b"{\"v\":1}",
        b"{\"v\":1,\"c\":1,\"t\":1,\"d\":[]}",
        b"{\"v\":1,\"c\":1,\"t\":1,\"d\":{\"cart\":1,\"cart\":2}}",
        b"{\"v\":-1,\"c\":1,\"t\":1,\"d\":{}}",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(
                TypedSession::<Shop>::import(bad),
                Err(LoadError::Corrupt(_))
            ),
            "{bad:?}"
        );
    }
}

// A three-step migration chain: v1 {"user": n, "items": [sku...]}
// -> v2 renames user -> user_id -> v3 turns skus into items
// -> v4 adds a theme key.

fn v1_to_v2(mut data: Value) -> Result<Value, MigrationError> {
    let obj = data
        .as_object_mut()
        .ok_or_else(|| MigrationError::new("not an object"))?;
    let user = obj.remove("user").unwrap_or(Value::Null);
    obj.insert("user_id".into(), user);
    Ok(data)
}

fn v2_to_v3(mut data: Value) -> Result<Value, MigrationError> {
    let obj = data
        .as_object_mut()
        .ok_or_else(|| MigrationError::new("not an object"))?;
    let skus: Vec<u32> = serde_json::from_value(obj.remove("items").unwrap_or(json!([])))?;
    let cart: Vec<Item> = skus.into_iter().map(|sku| Item { sku, qty: 1 }).collect();
    obj.insert("cart".into(), serde_json::to_value(cart)?);
    Ok(data)
}

fn v3_to_v4(mut data: Value) -> Result<Value, MigrationError> {
    let obj = data
        .as_object_mut()
        .ok_or_else(|| MigrationError::new("not an object"))?;
    obj.insert("theme".into(), json!("migrated"));
    Ok(data)
}

#[derive(SessionSchema)]
#[session(
    version = 4,
    migrate(from = 1, with = v1_to_v2),
    migrate(from = 2, with = v2_to_v3),
    migrate(from = 3, with = v3_to_v4)
)]
struct ShopV4 {
    user_id: Option<u64>,
    cart: Vec<Item>,
    theme: String,
}

#[test]
fn three_step_migration_from_v1() {
    let bytes = stored(1, json!({"user": 42, "items": [1000, 1001]}));
    let s = TypedSession::<ShopV4>::import(&bytes).unwrap();
    assert_eq!(s.user_id(), Some(42));
    assert_eq!(s.cart(), vec![item(1000), item(1001)]);
    assert_eq!(s.theme(), "migrated");
    assert!(s.is_changed(), "a migrated record is written back");
    let out: Value = serde_json::from_slice(&s.export().unwrap()).unwrap();
    assert_eq!(out["v"], 4);

    // From v3: only the last step runs.
    let bytes = stored(3, json!({"user_id": 1, "cart": []}));
    let s = TypedSession::<ShopV4>::import(&bytes).unwrap();
    assert_eq!(s.theme(), "migrated");

    // Current version: no migration, nothing to write.
    let bytes = stored(4, json!({"user_id": 1, "cart": [], "theme": "x"}));
    let s = TypedSession::<ShopV4>::import(&bytes).unwrap();
    assert!(!s.is_changed());
}

#[test]
fn failed_migration_is_typed() {
    let bytes = stored(2, json!({"items": "not a list"}));
    match TypedSession::<ShopV4>::import(&bytes) {
        Err(LoadError::Migration { from, source }) => {
            assert_eq!(from, 2);
            assert!(
                std::error::Error::source(&source).is_some(),
                "the serde error is kept"
            );
        }
        other => panic!("expected Migration, got {:?}", other.map(|_| ())),
    }
}

/// A record of a newer version (a rolling deploy) is read field by field:
/// what decodes is used, what does not reads as its default and is kept as
/// stored, unknown fields are carried along, and a write keeps the newer
/// version and changes only what it changed.
#[test]
fn newer_version_is_read_field_by_field() {
    let bytes = br#"{"v":5,"c":1,"t":1,"d":{"user_id":9,"cart":{"lines":[{"sku":7,"qty":1}]},"theme":"dark","v5_only":[1, 2.50]}}"#;
    let s = TypedSession::<ShopV4>::import(bytes).unwrap();
    assert_eq!(s.user_id(), Some(9));
    assert_eq!(s.theme(), "dark");
    assert!(s.cart().is_empty(), "a newer shape reads as the default");
    assert!(!s.is_changed(), "nothing to write back");

    s.set_theme("light".into()).unwrap();
    let out = String::from_utf8(s.export().unwrap()).unwrap();
    assert!(out.starts_with(r#"{"v":5,"#), "{out}");
    assert!(out.contains(r#""theme":"light""#), "{out}");
    assert!(
        out.contains(r#""v5_only":[1, 2.50]"#),
        "kept byte for byte: {out}"
    );
    assert!(out.contains(r#""cart":{"lines":[{"#), "kept: {out}");

    s.set_cart(vec![item(8)]).unwrap();
    assert!(matches!(
        s.export(),
        Err(Error::NewerSchema {
            field: "cart",
            version: 5
        })
    ));
}

#[test]
fn debug_output_shows_no_data() {
    let s = shop();
    s.set_coupon(Some("SECRET-COUPON".into())).unwrap();
    let text = format!("{s:?} {:?}", s.view());
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("TypedSession"));
}

#[test]
fn view_reads_the_same_state() {
    let s = shop();
    let view = s.view();
    s.set_theme("dark".into()).unwrap();
    assert_eq!(view.theme(), "dark");
    assert_eq!(view.with_cart(Vec::len), 0);
}

#[test]
fn the_in_memory_copy_equals_a_store_round_trip() {
    // Stores that keep records in memory hand back a decoded copy instead of
    // bytes; it must be exactly what decoding the bytes would give.
    let s = shop();
    s.set_scratch(9).unwrap();
    s.notices().push("one".into());
    s.notices().now("only now".into());
    s.set_cart(vec![item(3)]).unwrap();
    let copy = <Shop as SessionSchema>::clone_stored(&s.snapshot());
    let round_trip = TypedSession::<Shop>::import(&s.export().unwrap())
        .unwrap()
        .snapshot();
    let data = |shop: Shop| -> Value {
        let v: Value =
            serde_json::from_slice(&TypedSession::detached(shop).export().unwrap()).unwrap();
        v["d"].clone()
    };
    assert_eq!(copy.scratch, 0, "skipped fields are not kept");
    assert_eq!(round_trip.scratch, 0);
    let copy_session = TypedSession::detached(copy);
    let trip_session = TypedSession::detached(round_trip);
    assert_eq!(copy_session.notices().drain(), vec!["one".to_owned()]);
    assert_eq!(trip_session.notices().drain(), vec!["one".to_owned()]);
    assert_eq!(data(copy_session.snapshot()), data(trip_session.snapshot()));
}

#[test]
fn random_corruptions_of_stored_records_never_panic() {
    use rand::{Rng, SeedableRng};
    let s = shop();
    s.set_cart(vec![item(1), item(2)]).unwrap();
    s.notices().push("hello".into());
    s.set_registration(Registration::Step1 {
        email: "a@b.c".into(),
    })
    .unwrap();
    let good = s.export().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xdec0de);
    let alphabet = b"{}[]\":,0123456789-.eE tfnul\\\xff";
    let mut loaded = 0usize;
    for _ in 0..100_000 {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[i] = alphabet[rng.random_range(0..alphabet.len())],
                1 => bytes.truncate(i.max(1)),
                _ => bytes.insert(i, alphabet[rng.random_range(0..alphabet.len())]),
            }
        }
        if let Ok(session) = TypedSession::<Shop>::import(&bytes) {
            // Whatever loads satisfies every rule.
            let snap = session.snapshot();
            assert!(snap.cart.len() <= 3 && snap.user_id != Some(0));
            loaded += 1;
        }
    }
    assert!(loaded > 0, "some mutations are still valid records");
}

/// Finding: flash queues grew without limit. A field keeps at most
/// `MAX_PENDING_FLASH` messages, dropping the oldest, also when loading a
/// record written with more.
#[test]
fn flash_queues_are_bounded_oldest_dropped() {
    use typed_session::MAX_PENDING_FLASH;
    let s = shop();
    for i in 0..MAX_PENDING_FLASH + 36 {
        s.notices().push(format!("n{i}"));
    }
    let stored = s.export().unwrap();
    let next = TypedSession::<Shop>::import(&stored).unwrap();
    let got = next.notices().drain();
    assert_eq!(got.len(), MAX_PENDING_FLASH);
    assert_eq!(
        got.first().map(String::as_str),
        Some("n36"),
        "the oldest went"
    );
    assert_eq!(
        got.last().map(String::as_str),
        Some(format!("n{}", MAX_PENDING_FLASH + 35).as_str())
    );
    let many: Vec<String> = (0..500).map(|i| format!("\"m{i}\"")).collect();
    let record = format!(
        r#"{{"v":1,"c":0,"t":0,"d":{{"notices":[{}]}}}}"#,
        many.join(",")
    );
    let loaded = TypedSession::<Shop>::import(record.as_bytes()).unwrap();
    let got = loaded.notices().drain();
    assert_eq!(got.len(), MAX_PENDING_FLASH);
    assert_eq!(got.last().map(String::as_str), Some("m499"));
}

/// The generated handle types can be named, and renamed with `handle = "..."`.
mod named_handles {
    use typed_session::{SessionSchema, SessionView, TypedSession};

    #[derive(SessionSchema)]
    #[session(handle = "LoginState")]
    struct Auth {
        /// The signed-in user.
        user: Option<u64>,
    }

    fn signed_in(state: &LoginStateView) -> bool {
        state.user().is_some()
    }

    fn sign_in(state: &LoginState, user: u64) {
        state.set_user(Some(user)).unwrap();
    }

    #[test]
    fn handles_are_named_types() {
        let session = TypedSession::detached(Auth { user: None });
        assert!(!signed_in(&session));
        sign_in(&session, 7);
        assert!(signed_in(&session));
        let view: SessionView<Auth> = session.view();
        assert!(signed_in(&view));
    }
}
