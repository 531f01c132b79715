//! Flash messages: values written for the next request and consumed by reading.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::SessionSchema;
use crate::state::Core;

/// Most messages one flash field holds for later requests; pushing more
/// drops the oldest (logged at debug), so a loop or a hostile client cannot
/// grow a session without bound through flash messages.
pub const MAX_PENDING_FLASH: usize = 64;

impl<S: SessionSchema> Core<S> {
    /// The handle of a flash field.
    pub fn flash<T: Clone>(
        &self,
        index: usize,
        project: fn(&mut S) -> &mut Flash<T>,
    ) -> FlashHandle<'_, S, T> {
        FlashHandle::new(self, index, project)
    }
}

/// A list of flash messages stored in a session field marked `#[session(flash)]`.
///
/// A message pushed in one request is visible to the next request that
/// reads the field; reading drains it. Access it through the generated
/// accessor, which returns a [`FlashHandle`]:
///
/// ```
/// use typed_session::{Flash, SessionSchema, TypedSession};
///
/// #[derive(SessionSchema)]
/// struct Site {
///     #[session(flash)]
///     notices: Flash<String>,
/// }
///
/// // request 1
/// let session = TypedSession::detached(Site { notices: Flash::default() });
/// session.notices().push("saved".to_owned());
/// let stored = session.export().unwrap();
///
/// // request 2
/// let session = TypedSession::<Site>::import(&stored).unwrap();
/// assert_eq!(session.notices().drain(), vec!["saved".to_owned()]);
/// assert!(session.notices().is_empty());
/// ```
pub struct Flash<T> {
    /// Left by earlier requests and not read yet.
    incoming: Vec<T>,
    /// Pushed in this request, for the next one.
    outgoing: Vec<T>,
    /// Shown in this request only; never stored.
    now: Vec<T>,
    /// Read in this request; `keep` puts them back.
    consumed: Vec<T>,
}

impl<T> Default for Flash<T> {
    fn default() -> Self {
        Flash {
            incoming: Vec::new(),
            outgoing: Vec::new(),
            now: Vec::new(),
            consumed: Vec::new(),
        }
    }
}

impl<T: Clone> Clone for Flash<T> {
    fn clone(&self) -> Self {
        Flash {
            incoming: self.incoming.clone(),
            outgoing: self.outgoing.clone(),
            now: self.now.clone(),
            consumed: self.consumed.clone(),
        }
    }
}

impl<T> fmt::Debug for Flash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Flash contents may be personal data: counts only.
        f.debug_struct("Flash")
            .field("pending", &(self.incoming.len() + self.outgoing.len()))
            .field("now", &self.now.len())
            .finish()
    }
}

impl<T> Flash<T> {
    /// A flash list holding `messages` as if an earlier request had pushed them.
    pub fn from_pending(messages: Vec<T>) -> Self {
        Flash {
            incoming: messages,
            ..Flash::default()
        }
    }

    /// What a store round trip keeps: the pending messages, as if just loaded.
    #[doc(hidden)]
    pub fn stored_clone(&self) -> Self
    where
        T: Clone,
    {
        Flash::from_pending(
            self.incoming
                .iter()
                .chain(&self.outgoing)
                .cloned()
                .collect(),
        )
    }

    /// Messages waiting to be read (not counting `now` messages).
    pub fn pending_len(&self) -> usize {
        self.incoming.len() + self.outgoing.len()
    }
}

impl<T: Serialize> Flash<T> {
    /// Another request's stored list with this request's changes applied:
    /// what this request read is removed (first occurrences), what it
    /// pushed is appended, the oldest dropped past [`MAX_PENDING_FLASH`].
    pub(crate) fn merged_into(&self, theirs: &str) -> Result<Vec<u8>, serde_json::Error> {
        let mut list: Vec<serde_json::Value> = serde_json::from_str(theirs)?;
        for shown in &self.consumed {
            let shown = serde_json::to_value(shown)?;
            if let Some(at) = list.iter().position(|m| *m == shown) {
                list.remove(at);
            }
        }
        for pushed in &self.outgoing {
            list.push(serde_json::to_value(pushed)?);
        }
        let excess = list.len().saturating_sub(MAX_PENDING_FLASH);
        list.drain(..excess);
        serde_json::to_vec(&list)
    }
}

impl<T: Serialize> Serialize for Flash<T> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.pending_len()))?;
        for item in self.incoming.iter().chain(&self.outgoing) {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Flash<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut pending = Vec::<T>::deserialize(deserializer)?;
        // A record written with a larger bound keeps its newest messages.
        let excess = pending.len().saturating_sub(MAX_PENDING_FLASH);
        pending.drain(..excess);
        Ok(Flash::from_pending(pending))
    }
}

/// The accessor of one flash field, returned by the generated `field()` method.
///
/// `push` queues a message for the next request, `now` shows one in this
/// request only, `drain` reads (and consumes) what earlier requests left plus
/// this request's `now` messages, `keep` puts what this request read back for
/// the next one.
pub struct FlashHandle<'a, S: SessionSchema, T> {
    core: &'a Core<S>,
    index: usize,
    project: fn(&mut S) -> &mut Flash<T>,
}

impl<S: SessionSchema, T> fmt::Debug for FlashHandle<'_, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlashHandle")
            .field("field", &S::FIELDS[self.index].name)
            .finish()
    }
}

impl<'a, S: SessionSchema, T: Clone> FlashHandle<'a, S, T> {
    #[doc(hidden)]
    pub fn new(core: &'a Core<S>, index: usize, project: fn(&mut S) -> &mut Flash<T>) -> Self {
        FlashHandle {
            core,
            index,
            project,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Flash<T>) -> (R, bool)) -> R {
        let project = self.project;
        self.core.with_flash(self.index, |s| f(project(s)))
    }

    /// Queues `message` for the next request that reads this field. A field
    /// holds at most [`MAX_PENDING_FLASH`] messages: beyond that, the oldest
    /// pending message is dropped.
    pub fn push(&self, message: T) {
        self.with(|flash| {
            if flash.pending_len() >= MAX_PENDING_FLASH {
                tracing::debug!("flash queue full; dropping its oldest message");
                if flash.incoming.is_empty() {
                    flash.outgoing.remove(0);
                } else {
                    flash.incoming.remove(0);
                }
            }
            flash.outgoing.push(message);
            ((), true)
        })
    }

    /// Shows `message` to this request only (returned by `drain` and `peek`); it is never stored.
    pub fn now(&self, message: T) {
        self.with(|flash| {
            flash.now.push(message);
            ((), false)
        })
    }

    /// Keeps the messages this request has read for the next request too.
    pub fn keep(&self) {
        self.with(|flash| {
            let kept = std::mem::take(&mut flash.consumed);
            let changed = !kept.is_empty();
            flash.incoming.splice(0..0, kept);
            ((), changed)
        })
    }

    /// Returns and consumes the messages left by earlier requests, followed by
    /// this request's `now` messages. Messages pushed in this request are not
    /// included: they are for the next request.
    pub fn drain(&self) -> Vec<T> {
        self.with(|flash| {
            let incoming = std::mem::take(&mut flash.incoming);
            let changed = !incoming.is_empty();
            flash.consumed.extend(incoming.iter().cloned());
            let mut out = incoming;
            out.append(&mut flash.now);
            (out, changed)
        })
    }

    /// Returns the messages `drain` would return, without consuming them.
    pub fn peek(&self) -> Vec<T> {
        self.with(|flash| {
            let out = flash.incoming.iter().chain(&flash.now).cloned().collect();
            (out, false)
        })
    }

    /// `true` when `drain` would return nothing.
    pub fn is_empty(&self) -> bool {
        self.with(|flash| (flash.incoming.is_empty() && flash.now.is_empty(), false))
    }
}
