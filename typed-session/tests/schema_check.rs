//! The recorded stored shapes (`typed_session::schema`): each kind of
//! change to a session's stored shape is reported with its path and the
//! right advice, compatible changes are told apart, the migration chain is
//! replayed from every recorded older version, and CI never writes.
//!
//! Each test records "before" with one struct and checks "after" with
//! another of the same name (they stand for two builds of one crate).
#![cfg(feature = "schema-check")]
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use typed_session::schema::{Drift, DriftKind, Outcome, RecordMode, ShapeCheck};
use typed_session::serde_json::{Value, json};
use typed_session::{MigrationError, SessionSchema};

/// A fresh folder of recorded shapes for one test (inside a temporary
/// directory that lives as long as the process: the suites read it back).
fn dir(test: &str) -> PathBuf {
    static ROOT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .join(test)
}

fn record<S: SessionSchema>(dir: &PathBuf) {
    let report = ShapeCheck::in_dir(dir)
        .mode(RecordMode::RecordMissing)
        .check::<S>()
        .unwrap();
    assert!(matches!(report.outcome, Outcome::Recorded(_)), "{report:?}");
}

fn check<S: SessionSchema>(dir: &PathBuf) -> Result<typed_session::schema::Report, Drift> {
    ShapeCheck::in_dir(dir).mode(RecordMode::Check).check::<S>()
}

fn drift_of<S: SessionSchema>(dir: &PathBuf) -> Drift {
    match check::<S>(dir) {
        Ok(r) => panic!("expected a drift, the check passed: {r:?}"),
        Err(d) => d,
    }
}

mod before {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    pub(crate) struct Line {
        pub(crate) sku: u32,
        pub(crate) qty: u32,
    }

    #[derive(Clone, Default, Serialize, Deserialize)]
    pub(crate) enum Step {
        #[default]
        Start,
        Named {
            name: String,
        },
        Done,
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<Line>,
        pub(crate) step: Step,
        pub(crate) visits: u32,
    }
}

pub(crate) fn identity(v: Value) -> Result<Value, MigrationError> {
    Ok(v)
}

#[test]
fn an_unchanged_shape_passes_and_ci_never_writes() {
    let d = dir("unchanged");
    // CI and no record: fails, writes nothing.
    let missing = drift_of::<before::Shop>(&d);
    assert_eq!(missing.kind(), DriftKind::Missing);
    assert!(
        missing.to_string().contains("Shop is at version 2"),
        "{missing}"
    );
    assert!(missing.to_string().contains("CI is set"), "{missing}");
    assert!(!d.exists(), "CI wrote {d:?}");
    // Outside CI: recorded, then unchanged.
    record::<before::Shop>(&d);
    let text = std::fs::read_to_string(d.join("Shop/v2.shape")).unwrap();
    assert!(text.contains("session Shop v2 {"), "{text}");
    assert!(text.contains("cart: Vec<Line>,"), "{text}");
    assert!(
        text.contains("struct Line { sku: u32, qty: u32 }"),
        "{text}"
    );
    assert!(text.contains("Named { name: String },"), "{text}");
    let report = check::<before::Shop>(&d).unwrap();
    assert_eq!(report.outcome, Outcome::Unchanged);
}

mod nested_rename {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    pub(crate) struct Line {
        pub(crate) sku: u32,
        pub(crate) quantity: u32,
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<Line>,
        pub(crate) step: before::Step,
        pub(crate) visits: u32,
    }
}

#[test]
fn a_renamed_nested_field_needs_a_bump() {
    let d = dir("nested-rename");
    record::<before::Shop>(&d);
    let drift = drift_of::<nested_rename::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Incompatible, "{m}");
    assert!(
        m.contains("Shop: the stored shape of version 2 changed without a version bump"),
        "{m}"
    );
    assert!(m.contains("  cart[].qty: u32 → removed\n"), "{m}");
    assert!(m.contains("  cart[].quantity: u32 → added\n"), "{m}");
    assert!(m.contains("cart: missing field `quantity`"), "{m}");
    assert!(
        m.contains("#[session(version = 3, migrate(from = 2, with = ...))]"),
        "{m}"
    );
    assert!(m.contains("Shop/v3.shape"), "{m}");
    // Re-recording is refused for an incompatible change.
    let again = ShapeCheck::in_dir(&d)
        .mode(RecordMode::Overwrite)
        .check::<nested_rename::Shop>()
        .unwrap_err();
    assert_eq!(again.kind(), DriftKind::Incompatible);
}

mod retyped {
    use super::*;

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<before::Line>,
        pub(crate) step: before::Step,
        pub(crate) visits: String,
    }
}

#[test]
fn a_retyped_field_needs_a_bump() {
    let d = dir("retyped");
    record::<before::Shop>(&d);
    let drift = drift_of::<retyped::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Incompatible, "{m}");
    assert!(m.contains("  visits: u32 → String\n"), "{m}");
    assert!(m.contains("visits: invalid type"), "{m}");
}

mod widened {
    use super::*;

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<before::Line>,
        pub(crate) step: before::Step,
        pub(crate) visits: u64,
    }
}

#[test]
fn widening_is_compatible_and_re_recorded_on_request() {
    let d = dir("widened");
    record::<before::Shop>(&d);
    let drift = drift_of::<widened::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Compatible, "{m}");
    assert!(m.contains("  visits: u32 → u64\n"), "{m}");
    assert!(m.contains("No version bump is"), "{m}");
    assert!(m.contains("TYPED_SESSION_RECORD=1"), "{m}");
    let report = ShapeCheck::in_dir(&d)
        .mode(RecordMode::Overwrite)
        .check::<widened::Shop>()
        .unwrap();
    assert!(matches!(report.outcome, Outcome::Rerecorded(_)));
    assert_eq!(
        check::<widened::Shop>(&d).unwrap().outcome,
        Outcome::Unchanged
    );
}

mod variant_removed {
    use super::*;

    #[derive(Clone, Default, Serialize, Deserialize)]
    pub(crate) enum Step {
        #[default]
        Start,
        Named {
            name: String,
        },
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<before::Line>,
        pub(crate) step: Step,
        pub(crate) visits: u32,
    }
}

#[test]
fn a_removed_variant_needs_a_bump() {
    let d = dir("variant-removed");
    record::<before::Shop>(&d);
    let drift = drift_of::<variant_removed::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Incompatible, "{m}");
    assert!(m.contains("  step::Done: unit variant → removed\n"), "{m}");
    assert!(m.contains("step: unknown variant `Done`"), "{m}");
}

mod variant_added {
    use super::*;

    #[derive(Clone, Default, Serialize, Deserialize)]
    pub(crate) enum Step {
        #[default]
        Start,
        Named {
            name: String,
        },
        Paid(u64),
        Done,
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<before::Line>,
        pub(crate) step: Step,
        pub(crate) visits: u32,
    }
}

#[test]
fn an_added_variant_is_compatible() {
    let d = dir("variant-added");
    record::<before::Shop>(&d);
    let drift = drift_of::<variant_added::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Compatible, "{m}");
    assert!(m.contains("  step::Paid: variant(u64) → added\n"), "{m}");
}

mod defaulted {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    pub(crate) struct Line {
        pub(crate) sku: u32,
        pub(crate) qty: u32,
        #[serde(default)]
        pub(crate) gift: bool,
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<Line>,
        pub(crate) step: before::Step,
        pub(crate) visits: u32,
        pub(crate) theme: String,
    }
}

mod not_defaulted {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    pub(crate) struct Line {
        pub(crate) sku: u32,
        pub(crate) qty: u32,
        pub(crate) gift: bool,
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<Line>,
        pub(crate) step: before::Step,
        pub(crate) visits: u32,
    }
}

#[test]
fn an_added_field_with_a_default_is_compatible_one_without_is_not() {
    let d = dir("defaulted");
    record::<before::Shop>(&d);
    let drift = drift_of::<defaulted::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Compatible, "{m}");
    assert!(m.contains("  cart[].gift: bool → added\n"), "{m}");
    assert!(m.contains("  theme: String → added\n"), "{m}");

    let drift = drift_of::<not_defaulted::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Incompatible, "{m}");
    assert!(m.contains("cart: missing field `gift`"), "{m}");
}

mod session_rename {
    use super::*;

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::identity))]
    pub(crate) struct Shop {
        pub(crate) user_id: Option<u64>,
        pub(crate) cart: Vec<before::Line>,
        pub(crate) step: before::Step,
        #[session(rename = "page_views")]
        pub(crate) visits: u32,
    }
}

#[test]
fn a_renamed_session_field_needs_a_bump() {
    let d = dir("session-rename");
    record::<before::Shop>(&d);
    let drift = drift_of::<session_rename::Shop>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Incompatible, "{m}");
    assert!(m.contains("  visits: u32 → removed\n"), "{m}");
    assert!(m.contains("  page_views: u32 → added\n"), "{m}");
    assert!(m.contains("never reach the new name"), "{m}");
}

// A v1 -> v2 -> v3 chain: v2 renamed `qty` to `quantity` in the cart's
// lines, v3 adds a field. The v2 -> v3 step is right; the v1 -> v2 step of
// `forgetful` forgets the rename.

mod v1 {
    use super::*;

    #[derive(SessionSchema)]
    pub(crate) struct Chain {
        pub(crate) cart: Vec<before::Line>,
    }
}

mod v2 {
    use super::*;

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::rename_qty))]
    pub(crate) struct Chain {
        pub(crate) cart: Vec<nested_rename::Line>,
    }
}

pub(crate) fn rename_qty(mut v: Value) -> Result<Value, MigrationError> {
    if let Some(Value::Array(lines)) = v.get_mut("cart") {
        for line in lines {
            if let Some(obj) = line.as_object_mut()
                && let Some(q) = obj.remove("qty")
            {
                obj.insert("quantity".into(), q);
            }
        }
    }
    Ok(v)
}

pub(crate) fn add_note(mut v: Value) -> Result<Value, MigrationError> {
    v["note"] = json!("");
    Ok(v)
}

mod v3 {
    use super::*;

    #[derive(SessionSchema)]
    #[session(
        version = 3,
        migrate(from = 1, with = super::rename_qty),
        migrate(from = 2, with = super::add_note)
    )]
    pub(crate) struct Chain {
        pub(crate) cart: Vec<nested_rename::Line>,
        pub(crate) note: String,
    }
}

mod forgetful {
    use super::*;

    #[derive(SessionSchema)]
    #[session(
        version = 3,
        migrate(from = 1, with = super::identity),
        migrate(from = 2, with = super::add_note)
    )]
    pub(crate) struct Chain {
        pub(crate) cart: Vec<nested_rename::Line>,
        pub(crate) note: String,
    }
}

#[test]
fn the_migration_chain_is_replayed_from_every_recorded_version() {
    let d = dir("chain");
    record::<v1::Chain>(&d);
    record::<v2::Chain>(&d);
    record::<v3::Chain>(&d);
    assert_eq!(check::<v3::Chain>(&d).unwrap().outcome, Outcome::Unchanged);

    let drift = drift_of::<forgetful::Chain>(&d);
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Replay, "{m}");
    assert!(m.contains("from version 1"), "{m}");
    assert!(
        m.contains("`cart` does not load (missing field `quantity`"),
        "{m}"
    );
    assert!(!m.contains("from version 2"), "{m}");
}

mod leaves_a_key {
    use super::*;

    #[derive(SessionSchema)]
    #[session(
        version = 3,
        migrate(from = 1, with = super::rename_qty),
        migrate(from = 2, with = super::identity)
    )]
    pub(crate) struct Chain {
        pub(crate) basket: Vec<nested_rename::Line>,
    }
}

#[test]
fn a_migration_that_leaves_a_stored_key_behind_is_caught() {
    let d = dir("leftover");
    record::<v1::Chain>(&d);
    record::<v2::Chain>(&d);
    // Recording v3 writes its shape, then the replay of v1 and v2 fails.
    let drift = ShapeCheck::in_dir(&d)
        .mode(RecordMode::RecordMissing)
        .check::<leaves_a_key::Chain>()
        .unwrap_err();
    let m = drift.to_string();
    assert_eq!(drift.kind(), DriftKind::Replay, "{m}");
    assert!(m.contains("from version 1"), "{m}");
    assert!(
        m.contains("the migrations leave `cart`, which version 3 does not store"),
        "{m}"
    );
    assert!(d.join("Chain/v3.shape").exists());
}

mod untraceable {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    #[serde(untagged)]
    pub(crate) enum Either {
        Number(u64),
        Text(String),
    }

    #[derive(SessionSchema)]
    pub(crate) struct Loose {
        pub(crate) either: Option<Either>,
        pub(crate) raw: Value,
        pub(crate) count: u32,
    }
}

#[test]
fn what_the_tracer_cannot_follow_is_recorded_as_opaque() {
    let d = dir("opaque");
    record::<untraceable::Loose>(&d);
    let text = std::fs::read_to_string(d.join("Loose/v1.shape")).unwrap();
    assert!(text.contains("either: opaque(deserialize_any),"), "{text}");
    assert!(text.contains("raw: opaque(deserialize_any),"), "{text}");
    let report = check::<untraceable::Loose>(&d).unwrap();
    assert_eq!(report.outcome, Outcome::Unchanged);
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
}

#[test]
fn a_damaged_record_is_a_clear_error() {
    let d = dir("damaged");
    record::<v1::Chain>(&d);
    std::fs::write(
        d.join("Chain/v1.shape"),
        "session Chain v1 {\n  cart: Vec<\n}\n",
    )
    .unwrap();
    let drift = drift_of::<v1::Chain>(&d);
    assert_eq!(drift.kind(), DriftKind::Unreadable);
    assert!(drift.to_string().contains("line 3: expected"), "{drift}");
}
