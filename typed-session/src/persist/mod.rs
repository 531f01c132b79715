//! The load and commit paths of one session: cookie in → backend load →
//! decode → expiry → refusal (`load`); plan → backend write → what the
//! response cookie must be (here). Backend-independent: the backend does
//! the I/O.

mod load;

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::backend::Refresh;
use crate::backend::seam::{Merge, Payload, Stored, TypedCache, Written};
use crate::cookies::CookieOut;
use crate::envelope::{self, Cached};
use crate::error::{Error, error_chain};
use crate::frame::{FieldMask, Meta, Newer};
use crate::runtime::Runtime;
use crate::schema::SessionSchema;
use crate::state::{Action, CookieChange, Core, State};
use crate::telemetry;

/// What the layer adds to the response once the handler is done.
pub(crate) struct Finish {
    /// The save's outcome; an error replaces the response.
    pub(crate) result: Result<(), Error>,
    /// The `Set-Cookie` to send, if any.
    pub(crate) cookie: Option<CookieOut>,
}

/// One write, decided under the lock and carried out without it.
enum Op {
    Nothing,
    Create(Payload, Meta),
    Save(Stored, Payload, Meta),
    Touch(Stored, u64),
    Regenerate(Stored, Payload, Meta),
    /// Then, for writes made after `destroy`, a new session.
    Destroy(Stored, Option<(Payload, Meta)>),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Nothing => "none",
            Op::Create(..) => "create",
            Op::Save(..) => "save",
            Op::Touch(..) => "touch",
            Op::Regenerate(..) => "regenerate",
            Op::Destroy(..) => "destroy",
        }
    }
}

const REFUSED: &str = "typed_session_writes_refused_total";

/// Cookie mode with a revocation list: what a commit tells the list about
/// the session's copies (each in the record of its subject).
struct SealedCopies {
    /// The subject (as loaded: a destroy unbinds it) and id whose copies
    /// end (a destroy, a regenerate), and the latest any of them could
    /// live (unix ms).
    ended: Option<([u8; 16], [u8; 16], u64)>,
    /// Whether the copy written is the newest of its session (not a re-seal
    /// of an older copy).
    issued: bool,
}

impl SealedCopies {
    fn of<S>(st: &State<S>, rt: &Runtime, op: &Op) -> Option<Self> {
        if rt.revocation.is_none() || !matches!(rt.backend.refresh(), Refresh::Rewrite) {
            return None;
        }
        let ended = match (op, st.loaded_subject) {
            (Op::Destroy(stored, _) | Op::Regenerate(stored, ..), Some(digest)) => {
                let lifetime = rt.policy.absolute.unwrap_or(crate::expiry::MAX_LIFETIME);
                let latest = st
                    .meta
                    .created
                    .saturating_add(lifetime.as_millis().min(u128::from(u64::MAX)) as u64)
                    .max(stored.expires_at);
                Some((digest, *stored.id.as_bytes(), latest))
            }
            _ => None,
        };
        let issued = !(matches!(op, Op::Save(..)) && st.copy_deadline.is_some());
        Some(SealedCopies { ended, issued })
    }

    /// After the write: the ended id's copies end, and the copy just sealed
    /// (if any, of a session bound to a subject) is the newest of its
    /// session. A failure is the commit's failure (`503`): a logout whose
    /// copies would keep working must not look done.
    async fn record<S>(self, core: &Core<S>, rt: &Runtime) -> Result<(), Error> {
        let Some(list) = &rt.revocation else {
            return Ok(());
        };
        if let Some((digest, id, deadline)) = self.ended {
            list.copy_ended(&digest, id, deadline).await?;
        }
        let issued = {
            let st = core.lock();
            match (&st.stored, st.meta.subject) {
                (Some(stored), Some(subject)) if self.issued => Some((
                    subject.digest,
                    *stored.id.as_bytes(),
                    st.meta.touched,
                    stored.expires_at,
                )),
                _ => None,
            }
        };
        if let Some((digest, id, touched, deadline)) = issued {
            list.copy_issued(&digest, id, touched, deadline).await?;
        }
        Ok(())
    }
}

/// The pending work a failed commit puts back, so that a retry redoes it.
struct Pending {
    mask: FieldMask,
    expiry_changed: bool,
    action: Action,
}

impl<S: SessionSchema> Core<S> {
    /// The record's parts for a write under `meta`, within the size limit.
    /// `regenerated`: written by a regenerate (a login), which the memory
    /// store protects from eviction. `over`: a newer version's record this
    /// write goes over, with the fields this write changes.
    fn payload(
        &self,
        st: &State<S>,
        rt: &Runtime,
        meta: Meta,
        regenerated: bool,
        over: Option<(&Newer, FieldMask)>,
    ) -> Result<Payload, Error> {
        let (version, fields) = match over {
            Some((newer, mask)) => (
                newer.version,
                envelope::encode_over(&st.value, mask, newer)?,
            ),
            None => (
                S::VERSION,
                envelope::encode(&st.value).map_err(Error::Serialize)?,
            ),
        };
        // The limit is on the stored JSON record, framing included.
        let size = fields.len() + crate::frame::frame_len(version, &meta);
        if size > rt.max_session_bytes {
            return Err(Error::TooLarge {
                size,
                limit: rt.max_session_bytes,
            });
        }
        // A newer version's record is not this schema's value.
        let copy = (over.is_none() && rt.backend.keeps_copies()).then(|| {
            TypedCache(Arc::new(Cached {
                meta,
                value: st.value.clone_stored(),
            }))
        });
        Ok(Payload {
            version,
            meta,
            fields,
            established: regenerated,
            // A copy older than the newest issued lives no longer than it.
            expires_at: rt
                .policy
                .deadline(meta.created, meta.touched, meta.max_age)
                .min(st.copy_deadline.unwrap_or(u64::MAX)),
            copy,
        })
    }

    /// Decides what to write; takes the pending work out of the state.
    fn plan(&self, st: &mut State<S>, rt: &Runtime) -> Result<(Op, Pending), Error> {
        let now = rt.now_ms();
        let action = std::mem::replace(&mut st.action, Action::None);
        let mask = std::mem::take(&mut st.changed);
        let expiry_changed = std::mem::take(&mut st.expiry_changed);
        let pending = Pending {
            mask,
            expiry_changed,
            action,
        };
        let changes = mask != 0 || expiry_changed;
        let regenerated = action == Action::Regenerate;
        let fresh_meta = Meta {
            max_age: st.meta.max_age,
            subject: st.meta.subject,
            ..Meta::new(now)
        };
        let over = st.newer.as_ref().map(|newer| (newer, mask));
        let op = match (action, st.stored.clone()) {
            (Action::Destroy, Some(stored)) => {
                // A new session: written at this code's version.
                let after = match changes {
                    true => Some((
                        self.payload(st, rt, fresh_meta, regenerated, None)?,
                        fresh_meta,
                    )),
                    false => None,
                };
                Op::Destroy(stored, after)
            }
            (Action::Regenerate, Some(stored)) => {
                let meta = Meta {
                    created: if st.restart_lifetime {
                        now
                    } else {
                        st.meta.created
                    },
                    touched: now,
                    max_age: st.meta.max_age,
                    subject: st.meta.subject,
                };
                Op::Regenerate(stored, self.payload(st, rt, meta, regenerated, over)?, meta)
            }
            // A sealed cookie's deadline and key live in the cookie: a
            // refresh or a re-key is a rewrite.
            (Action::None, Some(stored))
                if changes || matches!(rt.backend.refresh(), Refresh::Rewrite) =>
            {
                let meta = Meta {
                    // A copy older than the newest issued stays that old:
                    // its re-seals never pass for the newest.
                    touched: match st.copy_deadline {
                        Some(_) => st.meta.touched,
                        None => now,
                    },
                    ..st.meta
                };
                Op::Save(stored, self.payload(st, rt, meta, regenerated, over)?, meta)
            }
            (Action::None, Some(stored)) => {
                let deadline = rt.policy.deadline(st.meta.created, now, st.meta.max_age);
                Op::Touch(stored, deadline)
            }
            (_, None) if changes => Op::Create(
                self.payload(st, rt, fresh_meta, regenerated, None)?,
                fresh_meta,
            ),
            (_, None) => Op::Nothing,
        };
        // Written over the newer record from now on, in this request.
        if let Some(newer) = st.newer.as_mut()
            && matches!(op, Op::Save(..) | Op::Regenerate(..))
        {
            newer.written |= mask;
        }
        Ok((op, pending))
    }

    /// Writes what changed.
    pub(crate) async fn commit(&self) -> Result<(), Error> {
        let Some(rt) = self.runtime().cloned() else {
            return Err(Error::Detached);
        };
        if self.poisoned() {
            tracing::warn!(
                "a handler panicked while changing the session; the changes are not saved"
            );
            return Ok(());
        }
        let (op, pending, sealed) = {
            let mut st = self.lock();
            // Nothing to write (the common read): no clock read, no span.
            if !Self::must_write(&st, &rt) {
                return Ok(());
            }
            let (op, pending) = match self.plan(&mut st, &rt) {
                Ok(planned) => planned,
                Err(err) => {
                    // Nothing was written: keep the work for a retry.
                    return Err(err);
                }
            };
            let sealed = SealedCopies::of(&st, &rt, &op);
            (op, pending, sealed)
        };
        let op_name = op.name();
        let timed = telemetry::timing().then(std::time::Instant::now);
        let span = tracing::debug_span!(
            "session.commit",
            backend = rt.backend.name(),
            op = op.name(),
            outcome = tracing::field::Empty,
            duration_us = tracing::field::Empty
        );
        let result = if span.is_disabled() {
            self.execute(&rt, op, pending.mask).await
        } else {
            let started = std::time::Instant::now();
            let result =
                Box::pin(self.execute(&rt, op, pending.mask).instrument(span.clone())).await;
            span.record("duration_us", started.elapsed().as_micros() as u64);
            span.record(
                "outcome",
                match &result {
                    Ok(()) => "ok",
                    Err(Error::Destroyed) => "session ended",
                    Err(_) => "failed",
                },
            );
            result
        };
        let result = match (result, sealed) {
            (Ok(()), Some(sealed)) => sealed.record(self, &rt).await,
            (result, _) => result,
        };
        match &result {
            Ok(()) => rt.health.ok(),
            Err(Error::Store(e)) => rt
                .health
                .failed(rt.backend.name(), op_name, &error_chain(e)),
            Err(_) => {}
        }
        Self::measure(&rt, op_name, timed, &result);
        match &result {
            // The session is gone: nothing is put back (a retry must not
            // bring the old data back under a new id). A sealed session over
            // the cookie budget would fail again: dropped, like a write over
            // the size limit, so a handler that handled the error keeps its answer.
            Ok(()) | Err(Error::Destroyed | Error::CookieTooLarge { .. }) => {}
            Err(_) => {
                let mut st = self.lock();
                st.changed |= pending.mask;
                st.expiry_changed |= pending.expiry_changed;
                if st.action == Action::None {
                    st.action = pending.action;
                }
            }
        }
        result
    }

    /// The commit's metrics (feature `metrics`).
    fn measure(
        rt: &Runtime,
        op: &'static str,
        started: Option<std::time::Instant>,
        result: &Result<(), Error>,
    ) {
        let backend = rt.backend.name();
        if let Some(started) = started
            && op != "none"
        {
            telemetry::store_time(backend, op, started.elapsed().as_secs_f64());
        }
        // Store errors are counted where they are said (`Health::failed`).
        let (counter, label) = match (result, op) {
            (Ok(()), "create") => ("typed_session_sessions_created_total", ("backend", backend)),
            (Ok(()), "save") => ("typed_session_sessions_saved_total", ("backend", backend)),
            (Ok(()), "regenerate") => (
                "typed_session_sessions_regenerated_total",
                ("backend", backend),
            ),
            (Ok(()), "destroy") => (
                "typed_session_sessions_destroyed_total",
                ("backend", backend),
            ),
            (Err(Error::TooLarge { .. }), _) => (REFUSED, ("reason", "too_large")),
            (Err(Error::CookieTooLarge { .. }), _) => (REFUSED, ("reason", "cookie_too_large")),
            (Err(Error::NewerSchema { .. }), _) => (REFUSED, ("reason", "newer_schema")),
            _ => return,
        };
        telemetry::count(counter, &[label]);
    }

    /// A new identity was persisted (created or regenerated): the response
    /// sends its cookie, and its lifetime is the one just written.
    fn adopt(&self, stored: Stored, meta: Meta) {
        let mut st = self.lock();
        st.stored = Some(stored);
        st.meta = meta;
        st.cookie = CookieChange::Set;
        st.restart_lifetime = false;
    }

    /// The session ended under this request: forget its data so that nothing
    /// from it is written under a new id, and tell the browser.
    fn ended(&self) -> Error {
        let mut st = self.lock();
        st.value = S::fresh();
        st.changed = 0;
        st.action = Action::None;
        st.expiry_changed = false;
        st.stored = None;
        st.newer = None;
        st.cookie = CookieChange::Remove;
        Error::Destroyed
    }

    async fn execute(&self, rt: &Runtime, op: Op, mask: FieldMask) -> Result<(), Error> {
        let meta = match &op {
            Op::Create(_, h) | Op::Save(_, _, h) | Op::Regenerate(_, _, h) => *h,
            _ => self.lock().meta,
        };
        let merge = |theirs: &[u8]| {
            let st = self.lock();
            envelope::merge(theirs, &st.value, mask, &meta, rt.newer_schema)
        };
        let merge: Merge<'_> = &merge;
        // A backend whose cookie holds the record sends it after every write.
        let rewritten = matches!(rt.backend.refresh(), Refresh::Rewrite);
        match op {
            Op::Nothing => Ok(()),
            Op::Create(payload, meta) => {
                let stored = rt.backend.create(payload).await?;
                self.adopt(stored, meta);
                Ok(())
            }
            Op::Save(stored, payload, meta) => {
                match rt.backend.save(&stored, payload, merge).await? {
                    Written::Done(stored) => {
                        let mut st = self.lock();
                        st.stored = Some(stored);
                        st.meta.touched = meta.touched;
                        if rewritten {
                            st.cookie = CookieChange::Set;
                            st.resign = false;
                        }
                        Ok(())
                    }
                    Written::Gone => {
                        tracing::debug!(
                            "session was destroyed or expired by another request; changes dropped"
                        );
                        Err(self.ended())
                    }
                }
            }
            Op::Touch(stored, deadline) => {
                // Planned only for a backend that refreshes by a touch.
                let Refresh::Touch(server) = rt.backend.refresh() else {
                    return Ok(());
                };
                let written = server.touch(&stored, deadline).await?;
                let mut st = self.lock();
                match written {
                    Written::Done(stored) => st.stored = Some(stored),
                    // Ended elsewhere; this request only read it, so the
                    // browser's cookie is left alone (it may be newer).
                    Written::Gone => st.stored = None,
                }
                Ok(())
            }
            Op::Regenerate(stored, payload, meta) => {
                match rt.backend.regenerate(&stored, payload, merge).await? {
                    Written::Done(stored) => {
                        self.adopt(stored, meta);
                        Ok(())
                    }
                    Written::Gone => Err(self.ended()),
                }
            }
            Op::Destroy(stored, after) => {
                rt.backend.destroy(&stored).await?;
                {
                    let mut st = self.lock();
                    st.stored = None;
                    st.cookie = CookieChange::Remove;
                }
                if let Some((payload, meta)) = after {
                    let stored = rt.backend.create(payload).await?;
                    self.adopt(stored, meta);
                }
                Ok(())
            }
        }
    }

    /// Drops the changes of a request whose response the commit policy
    /// refuses (by default a 5xx: the request failed midway). A requested
    /// `destroy` still happens (ending a session is never half-done, and a
    /// logout must not be undone by an error after it); writes made after
    /// it, regenerations, field changes and flash reads do not.
    pub(crate) fn discard_uncommitted(&self) {
        let mut st = self.lock();
        st.changed = 0;
        st.expiry_changed = false;
        if st.action != Action::Destroy {
            st.action = Action::None;
            st.discarded = true;
        }
    }

    /// Whether a commit has anything to write: changes, a lifecycle call,
    /// or an idle deadline due for a refresh.
    fn must_write(st: &State<S>, rt: &Runtime) -> bool {
        if st.discarded {
            return false;
        }
        let idle_due = st.stored.as_ref().is_some_and(|s| {
            rt.policy
                .needs_touch(st.meta.created, s.expires_at, st.loaded_at)
        });
        st.changed != 0
            || st.action != Action::None
            || st.expiry_changed
            || idle_due
            // Opened under an old key: re-sealed under the current one.
            || (st.resign
                && st.stored.is_some()
                && matches!(rt.backend.refresh(), Refresh::Rewrite))
    }

    /// What the response gets when the commit has nothing to write (the
    /// common read), without a future: `None` when there is a write to do,
    /// and [`finish`](Self::finish) must run.
    pub(crate) fn finish_unchanged(&self) -> Option<Finish> {
        let rt = self.runtime()?;
        if self.poisoned() || Self::must_write(&self.lock(), rt) {
            return None;
        }
        Some(self.response_cookie(Ok(())))
    }

    /// [`finish`](Self::finish) run to its end at once, without a future
    /// on the heap, when nothing in it can wait: the backend does no I/O
    /// (cookie mode) and there is no revocation list to tell. `None` when
    /// something could wait.
    pub(crate) fn finish_at_once(&self) -> Option<Finish> {
        let rt = self.runtime()?;
        if !rt.backend.completes_at_once() || rt.revocation.is_some() {
            return None;
        }
        let mut future = std::pin::pin!(self.finish());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(finish) => Some(finish),
            // Nothing above waits; were it to, the save is answered as failed.
            std::task::Poll::Pending => Some(Finish {
                result: Err(Error::Store(crate::error::StoreError::new(
                    std::io::Error::other("the session commit could not complete at once"),
                ))),
                cookie: None,
            }),
        }
    }

    /// Commits, then says what the response's cookie must be.
    pub(crate) async fn finish(&self) -> Finish {
        let result = self.commit().await;
        self.response_cookie(result)
    }

    fn response_cookie(&self, result: Result<(), Error>) -> Finish {
        let Some(rt) = self.runtime() else {
            return Finish {
                result,
                cookie: None,
            };
        };
        let st = self.lock();
        let max_age = st
            .meta
            .max_age
            .map(Duration::from_secs)
            .or(rt.cookie.max_age);
        let set = |stored: &Stored| CookieOut::Set {
            value: rt.backend.cookie_value(stored),
            max_age,
        };
        let cookie = match (st.cookie, &st.stored) {
            (CookieChange::Set, Some(stored)) => Some(set(stored)),
            (_, Some(stored)) if rt.rolling || st.resign => Some(set(stored)),
            (CookieChange::Remove, None) => Some(CookieOut::Remove),
            // A read with a dead cookie gets no removal: a slow response to
            // an old request must not log the browser out of a newer session.
            _ => None,
        };
        drop(st);
        Finish { result, cookie }
    }
}
