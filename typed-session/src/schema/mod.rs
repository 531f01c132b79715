//! The [`SessionSchema`] trait that `#[derive(SessionSchema)]` implements,
//! and (feature `schema-check`) the recorded stored shapes that keep a
//! change to the stored data from shipping without a version bump.
//!
//! # Recorded shapes
//!
//! With the `schema-check` feature (a dev-dependency is enough), one line
//! in a test checks the session's stored shape against the one recorded
//! for its version in `session-schemas/{Struct}/v{N}.shape`, in the crate
//! that runs the test:
//!
//! ```no_run
//! # use typed_session::SessionSchema;
//! # #[derive(SessionSchema)] struct ShopSession { n: u32 }
//! #[test]
//! fn session_shape_is_recorded() {
//!     typed_session::schema::assert_recorded::<ShopSession>();
//! }
//! ```
//!
//! See `assert_recorded` (feature `schema-check`) for what the check does
//! and what it prints.

use crate::error::{MigrationError, ValidationError};
use crate::state::Core;

#[cfg(feature = "schema-check")]
mod check;
#[cfg(feature = "schema-check")]
mod replay;
#[cfg(feature = "schema-check")]
mod shape;
#[cfg(feature = "schema-check")]
mod text;
#[cfg(feature = "schema-check")]
pub(crate) mod trace;

#[cfg(feature = "schema-check")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema-check")))]
pub use check::{
    Drift, DriftKind, Outcome, RECORD_DIR, RECORD_ENV, RecordMode, Report, ShapeCheck,
    assert_recorded,
};

/// A struct that can be stored as a typed session.
///
/// Implemented by `#[derive(SessionSchema)]`; implementing it by hand is not
/// supported (the hidden items are the derive's contract with the runtime and
/// may change in any release).
///
/// ```
/// use typed_session::{Flash, SessionSchema};
///
/// #[derive(SessionSchema)]
/// struct Visit {
///     count: u32,
///     #[session(flash)]
///     notices: Flash<String>,
/// }
///
/// assert_eq!(<Visit as SessionSchema>::VERSION, 1);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a session schema",
    label = "`{Self}` does not derive `SessionSchema`",
    note = "add `#[derive(SessionSchema)]` to the definition of `{Self}`"
)]
pub trait SessionSchema: Sized + Send + Sync + 'static {
    /// The version of the stored data this code writes
    /// (`#[session(version = N)]`, 1 when not given).
    const VERSION: u32;

    /// The struct's name, for messages and the recorded shapes' folder.
    #[doc(hidden)]
    const NAME: &'static str;

    #[doc(hidden)]
    const FIELDS: &'static [FieldMeta];

    /// The generated accessors (`{Struct}Handle`): what
    /// [`TypedSession<Self>`](crate::TypedSession) dereferences to.
    type Handle: HandleFor<Self>;

    /// The generated read-only accessors (`{Struct}View`): what
    /// [`SessionView<Self>`](crate::SessionView) dereferences to.
    type View: HandleFor<Self>;

    #[doc(hidden)]
    fn fresh() -> Self;

    #[doc(hidden)]
    fn clone_schema(&self) -> Self;

    /// The value a store round trip would give back: flash fields hold
    /// only their pending messages, skipped fields their default.
    #[doc(hidden)]
    fn clone_stored(&self) -> Self;

    /// Upgrades the stored data of version `from` to version `from + 1`.
    #[doc(hidden)]
    fn migrate(from: u32, data: serde_json::Value) -> Result<serde_json::Value, MigrationError>;

    /// Calls `visitor.field(index, type)` for each stored field.
    #[doc(hidden)]
    fn visit_field_types(visitor: &mut dyn FieldTypes) {
        let _ = visitor;
    }

    #[doc(hidden)]
    fn decode_field(&mut self, index: usize, raw: &str) -> Result<(), serde_json::Error>;

    #[doc(hidden)]
    fn encode_field(&self, index: usize, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;

    #[doc(hidden)]
    fn validate_field(&self, index: usize) -> Result<(), ValidationError>;

    /// Runs the struct-level rule (`#[session(validate = path)]`).
    #[doc(hidden)]
    fn validate(&self) -> Result<(), ValidationError>;

    #[doc(hidden)]
    fn reset_field(&mut self, index: usize);

    /// For a flash field: merges this request's changes (messages shown are
    /// removed, messages pushed are appended) into another writer's stored
    /// list `theirs`, into `out`; `false` for other fields.
    #[doc(hidden)]
    fn merge_flash_field(
        &self,
        index: usize,
        theirs: &str,
        out: &mut Vec<u8>,
    ) -> Result<bool, serde_json::Error> {
        let _ = (index, theirs, out);
        Ok(false)
    }
}

/// Receives the type of each stored field (see
/// `SessionSchema::visit_field_types`).
#[doc(hidden)]
pub trait FieldTypes {
    fn field(&mut self, index: usize, ty: FieldType);
}

/// A stored field's type, as far as the recorded shapes need it. Built
/// with the field's codec, so that a type that cannot be stored gives no
/// error of its own here.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct FieldType {
    #[cfg_attr(not(feature = "schema-check"), allow(dead_code))]
    pub(crate) type_name: &'static str,
    #[cfg(feature = "schema-check")]
    pub(crate) trace: fn() -> Traced,
}

/// A field type's traced format and the containers it reaches.
#[cfg(feature = "schema-check")]
pub(crate) type Traced =
    Result<(serde_reflection::Format, serde_reflection::Registry), serde_reflection::Error>;

/// What the runtime knows about one field.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct FieldMeta {
    /// The Rust field name.
    pub name: &'static str,
    /// The key in stored data (`rename`).
    pub key: &'static str,
    /// `false` for `#[session(skip)]`.
    pub stored: bool,
    /// `#[session(flash)]`.
    pub flash: bool,
    /// `#[session(readonly)]`.
    pub readonly: bool,
    /// `#[session(on_invalid = ...)]`.
    pub on_invalid: OnInvalid,
}

/// What loading does with a stored field that fails to parse or validate
/// (`#[session(on_invalid = "...")]`).
///
/// ```
/// use typed_session::{LoadError, SessionSchema, TypedSession};
///
/// fn known(id: &Option<u64>) -> Result<(), &'static str> {
///     if *id == Some(0) { Err("0 is never issued") } else { Ok(()) }
/// }
///
/// #[derive(SessionSchema)]
/// struct Auth {
///     #[session(validate = known, on_invalid = "destroy")]
///     user_id: Option<u64>,
///     theme: String, // "reset" by default
/// }
///
/// let stored = br#"{"v":1,"c":0,"t":0,"d":{"user_id":7,"theme":42}}"#;
/// let session = TypedSession::<Auth>::import(stored).unwrap();
/// assert_eq!(session.theme(), "", "reset to its default");
///
/// let stored = br#"{"v":1,"c":0,"t":0,"d":{"user_id":0}}"#;
/// assert!(matches!(TypedSession::<Auth>::import(stored), Err(LoadError::Destroy(_))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnInvalid {
    /// Replace the field with its default and write the session back (the default).
    Reset,
    /// Delete the whole session and continue with a new anonymous one.
    Destroy,
    /// Reject the request with [`SessionRejection::InvalidSession`](crate::SessionRejection).
    Reject,
}

/// Generated handle types: built from, and giving access to, the shared state.
#[doc(hidden)]
pub trait HandleFor<S: SessionSchema>: Send + Sync + 'static {
    fn from_core(core: Core<S>) -> Self;
    fn core(&self) -> &Core<S>;
}

/// The handle used by the derive's error fallback; it has no accessors.
#[doc(hidden)]
#[derive(Debug)]
pub struct StubHandle<S: SessionSchema>(Core<S>);

impl<S: SessionSchema> HandleFor<S> for StubHandle<S> {
    fn from_core(core: Core<S>) -> Self {
        StubHandle(core)
    }
    fn core(&self) -> &Core<S> {
        &self.0
    }
}
