//! What `#[derive(SessionSchema)]` expands to. Not public API: no semver
//! guarantees, may change in any release.

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::error::{MigrationError, ValidationError};
pub use crate::flash::{Flash, FlashHandle};
pub use crate::schema::{
    FieldMeta, FieldType, FieldTypes, HandleFor, OnInvalid, SessionSchema, StubHandle,
};
pub use crate::state::{Core, ReadCore};
pub use serde_json::Error as JsonError;
pub use serde_json::Value;
pub use std::vec::Vec;

/// What a session field's type must be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a session",
    label = "this field's type must implement `Serialize`, `Deserialize`, `Clone`, `Send` and `Sync`",
    note = "derive them: `#[derive(Clone, serde::Serialize, serde::Deserialize)]`, or mark the field `#[session(skip)]`"
)]
pub trait SessionValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> SessionValue for T {}

/// Never implemented: the bound on the setters of a `readonly` field.
#[diagnostic::on_unimplemented(
    message = "this session field is read-only",
    label = "read-only fields have no setter",
    note = "set a `#[session(readonly)]` field inside `session.regenerate_with(|s| ...)` (at login), or when the session is created"
)]
pub trait ReadonlyField {
    #[doc(hidden)]
    fn unreachable(self) -> core::convert::Infallible;
}

/// Never implemented: the bound on the writers of a read-only view.
#[diagnostic::on_unimplemented(
    message = "a `SessionView` is read-only",
    label = "views have no setters",
    note = "extract `TypedSession<S>` instead of `SessionView<S>` in a handler that changes the session"
)]
pub trait ViewIsReadOnly {
    #[doc(hidden)]
    fn unreachable(self) -> core::convert::Infallible;
}

/// Never implemented: the bound on the setters of a `flash` field.
#[diagnostic::on_unimplemented(
    message = "a flash field has no setter",
    label = "flash fields are written with `push`",
    note = "use `session.field().push(message)` for the next request, or `.now(message)` for this one"
)]
pub trait FlashField {
    #[doc(hidden)]
    fn unreachable(self) -> core::convert::Infallible;
}

/// The JSON codec of one field type. One generic entry point, so that a type
/// that is not storable gives one error per missing trait, not one per use.
#[allow(missing_debug_implementations)]
pub struct Codec<T> {
    encode: fn(&mut Vec<u8>, &T) -> Result<(), serde_json::Error>,
    decode: fn(&str) -> Result<T, serde_json::Error>,
    #[cfg(feature = "schema-check")]
    trace: fn() -> crate::schema::Traced,
}

pub fn codec<T: SessionValue>() -> Codec<T> {
    Codec {
        encode: |out, value| serde_json::to_writer(out, value),
        decode: |raw| serde_json::from_str(raw),
        #[cfg(feature = "schema-check")]
        trace: crate::schema::trace::traced::<T>,
    }
}

impl<T> Codec<T> {
    pub fn encode(self, out: &mut Vec<u8>, value: &T) -> Result<(), serde_json::Error> {
        (self.encode)(out, value)
    }

    pub fn decode(self, raw: &str) -> Result<T, serde_json::Error> {
        (self.decode)(raw)
    }

    /// Tells `visitor` the type of stored field `index`.
    pub fn visit(self, visitor: &mut dyn FieldTypes, index: usize) {
        visitor.field(
            index,
            FieldType {
                type_name: core::any::type_name::<T>(),
                #[cfg(feature = "schema-check")]
                trace: self.trace,
            },
        );
    }
}

pub fn migration_fn(
    f: fn(serde_json::Value) -> Result<serde_json::Value, MigrationError>,
) -> fn(serde_json::Value) -> Result<serde_json::Value, MigrationError> {
    f
}

/// Runs a field rule. The rule may take the field's type or anything it
/// borrows as (`&[T]` for a `Vec<T>`, `&str` for a `String`).
pub fn run_field_rule<T, A, E, F>(
    field: &'static str,
    value: &T,
    rule: F,
) -> Result<(), ValidationError>
where
    T: core::borrow::Borrow<A>,
    A: ?Sized,
    E: Display,
    F: FieldRule<T, A, E>,
{
    rule.check(value.borrow())
        .map_err(|e| ValidationError::field_invalid(field, e))
}

/// Runs the struct rule (`#[session(validate = path)]` on the struct).
pub fn run_container_rule<S, E, F>(value: &S, rule: F) -> Result<(), ValidationError>
where
    E: Display,
    F: FieldRule<S, S, E>,
{
    rule.check(value).map_err(ValidationError::struct_invalid)
}

pub fn default_fn<T>(f: fn() -> T) -> fn() -> T {
    f
}

/// What a field needs to start a new session with: a default.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no default value to start a new session with",
    label = "this field's type does not implement `Default`",
    note = "derive or implement `Default` for it, or name a function that makes the value: `#[session(default = path)]` with `fn() -> {Self}`"
)]
pub trait SessionDefault: Sized {
    #[doc(hidden)]
    fn session_default() -> Self;
}

impl<T: Default> SessionDefault for T {
    fn session_default() -> Self {
        T::default()
    }
}

/// The default of a field's type (see [`SessionDefault`]).
pub fn default_value<T: SessionDefault>() -> T {
    T::session_default()
}

/// A field's validation rule: `fn(&T) -> Result<(), E: Display>`, or the
/// borrowed form (`fn(&[T])` for a `Vec<T>`, `fn(&str)` for a `String`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a validation rule for a field of type `{T}`",
    label = "expected `fn(&{T}) -> Result<(), E>` with `E: Display`",
    note = "a field rule takes the field by reference (or as what it borrows as: `&[U]` for `Vec<U>`, `&str` for `String`) and returns `Result<(), E>` where `E: std::fmt::Display`; the struct rule is `fn(&Struct) -> Result<(), E>`"
)]
pub trait FieldRule<T: ?Sized, A: ?Sized, E> {
    #[doc(hidden)]
    fn check(&self, value: &A) -> Result<(), E>;
}

impl<T: ?Sized, A: ?Sized, E: Display, F: Fn(&A) -> Result<(), E>> FieldRule<T, A, E> for F
where
    T: core::borrow::Borrow<A>,
{
    fn check(&self, value: &A) -> Result<(), E> {
        self(value)
    }
}

/// The flash merge of one field (see `SessionSchema::merge_flash_field`).
pub fn merge_flash<T: Serialize>(
    ours: &Flash<T>,
    theirs: &str,
    out: &mut Vec<u8>,
) -> Result<bool, serde_json::Error> {
    *out = ours.merged_into(theirs)?;
    Ok(true)
}
