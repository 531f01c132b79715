//! The accessor core: reads and validated writes of fields and of the whole
//! value, with change tracking. Generated accessors call these.

use crate::envelope::stored_mask;
use crate::error::ValidationError;
use crate::frame::FieldMask;
use crate::schema::SessionSchema;
use crate::state::{Core, ReadCore, State};

impl<S: SessionSchema> State<S> {
    /// A new, empty session.
    pub(crate) fn fresh(now: u64) -> Self {
        State::new(S::fresh(), now)
    }

    pub(crate) fn mark(&mut self, index: usize) {
        if S::FIELDS.get(index).is_some_and(|f| f.stored) {
            self.changed |= 1u128 << index;
        }
    }

    /// Replaces the value by `f`'s change of it if every rule passes
    /// (`f` may set read-only fields); marks every stored field changed.
    pub(crate) fn replace_checked<R>(
        &mut self,
        f: impl FnOnce(&mut S) -> R,
    ) -> Result<R, ValidationError> {
        let backup = self.value.clone_schema();
        let out = f(&mut self.value);
        if let Err(e) = check_all(&self.value) {
            self.value = backup;
            return Err(e);
        }
        self.changed = stored_mask::<S>();
        Ok(out)
    }
}

fn check_one<S: SessionSchema>(value: &S, index: usize) -> Result<(), ValidationError> {
    value.validate_field(index)?;
    value.validate()
}

pub(crate) fn check_all<S: SessionSchema>(value: &S) -> Result<(), ValidationError> {
    for index in 0..S::FIELDS.len() {
        value.validate_field(index)?;
    }
    value.validate()
}

/// Each field's encoding (`None` where it fails), to tell what a change of
/// the whole value changed.
pub(crate) fn encode_fields<S: SessionSchema>(value: &S) -> Vec<Option<Vec<u8>>> {
    (0..S::FIELDS.len())
        .map(|i| {
            let mut out = Vec::new();
            value.encode_field(i, &mut out).ok().map(|()| out)
        })
        .collect()
}

/// The stored fields whose encoding differs (or failed) between two
/// [`encode_fields`] results.
pub(crate) fn changed_since<S: SessionSchema>(
    before: &[Option<Vec<u8>>],
    after: &[Option<Vec<u8>>],
) -> FieldMask {
    S::FIELDS
        .iter()
        .enumerate()
        .filter(|(i, meta)| meta.stored && (before[*i] != after[*i] || before[*i].is_none()))
        .fold(0, |mask, (i, _)| mask | (1u128 << i))
}

impl<S: SessionSchema> Core<S> {
    /// Runs `f` with the whole value.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.lock().value)
    }

    /// A copy of the whole value.
    pub fn snapshot(&self) -> S {
        self.lock().value.clone_schema()
    }

    /// Replaces one field, validated; rolled back on error.
    pub fn set_field<T>(
        &self,
        index: usize,
        project: fn(&mut S) -> &mut T,
        value: T,
    ) -> Result<(), ValidationError> {
        let mut st = self.lock();
        let old = std::mem::replace(project(&mut st.value), value);
        if let Err(e) = check_one(&st.value, index) {
            *project(&mut st.value) = old;
            return Err(e);
        }
        st.mark(index);
        Ok(())
    }

    /// Changes one field in place, validated; rolled back on error.
    pub fn update_field<T: Clone, R>(
        &self,
        index: usize,
        project: fn(&mut S) -> &mut T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, ValidationError> {
        let mut st = self.lock();
        let old = project(&mut st.value).clone();
        let out = f(project(&mut st.value));
        if let Err(e) = check_one(&st.value, index) {
            *project(&mut st.value) = old;
            return Err(e);
        }
        st.mark(index);
        Ok(out)
    }

    /// Takes one field out, leaving `default`.
    pub fn take_field<T>(&self, index: usize, project: fn(&mut S) -> &mut T, default: T) -> T {
        let mut st = self.lock();
        let out = std::mem::replace(project(&mut st.value), default);
        st.mark(index);
        out
    }

    /// Changes the whole value; every rule runs after; rolled back on error;
    /// read-only fields may not change.
    pub fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R, ValidationError> {
        let mut st = self.lock();
        let backup = st.value.clone_schema();
        let before = encode_fields(&st.value);
        let out = f(&mut st.value);
        let after = encode_fields(&st.value);
        let result = check_all(&st.value).and_then(|()| {
            for (index, meta) in S::FIELDS.iter().enumerate() {
                if meta.readonly && before[index] != after[index] {
                    return Err(ValidationError::readonly(meta.name));
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            st.value = backup;
            return Err(e);
        }
        st.changed |= changed_since::<S>(&before, &after);
        Ok(out)
    }

    /// Runs `f` on the value for a flash field; marks the field changed
    /// when `f` says so.
    pub(crate) fn with_flash<R>(&self, index: usize, f: impl FnOnce(&mut S) -> (R, bool)) -> R {
        let mut st = self.lock();
        let (out, changed) = f(&mut st.value);
        if changed {
            st.mark(index);
        }
        out
    }
}

impl<S: SessionSchema> ReadCore<S> {
    /// Runs `f` with the whole value.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        self.0.read(f)
    }

    /// A copy of the whole value.
    pub fn snapshot(&self) -> S {
        self.0.snapshot()
    }
}
