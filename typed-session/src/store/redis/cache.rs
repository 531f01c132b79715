//! The store's local copy of recently used records, kept exact by Redis'
//! invalidation messages (server-assisted client-side caching) and, after a
//! message, by a check of the record's stamp.
//!
//! The connection runs `CLIENT TRACKING ON BCAST PREFIX <prefix> NOLOOP`:
//! Redis tells it about every change to a session key made by any other
//! connection (another app instance), on the same connection and in order
//! with the replies. Three rules keep the copy exact:
//!
//! * Messages are applied in the connection's reader, before the replies
//!   that follow them are handed out ([`Invalidations`] is called there).
//! * A reply is only cached if no message about its key arrived between
//!   sending the command and using the reply: [`Cache::reserve`] before
//!   sending, [`Cache::fill`] after, and any message in between removes the
//!   reservation.
//! * A copy is only used after a round trip that started after the request
//!   began (the store's barrier): every change acknowledged to anyone before
//!   then has had its message read by that point.
//! * A message does not say who made the change, and Redis 7.0 sends one
//!   for this connection's own script writes too. So a message turns a copy
//!   (or a reply still on its way) into a *suspect*, which the store uses
//!   only after Redis confirms its stamp (revision and expiry) with a
//!   `GETRANGE`; every change of a record's data takes a new revision.
//! * When the connection ends, the messages it would have carried are lost:
//!   every copy becomes a suspect, and so does a copy whose check failed
//!   on its way.
//! * This instance's own writes (delete, save, touch, regenerate) are
//!   marked from before their command is sent until its reply is back
//!   ([`Cache::begin_write`]): a read of the key that starts meanwhile may
//!   reach Redis before the write or after it, and Redis does not tell
//!   this connection about its own `DEL` (`NOLOOP`), so its reply is kept
//!   only as a suspect, never trusted. A read that started before the mark
//!   loses its reservation; one that starts after the reply cannot reach
//!   Redis before the write. No stale copy, whatever the interleaving.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};

use crate::id::SessionKey;
use crate::store::Record;

/// Proof that nothing was said about a key since [`Cache::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket(u64);

enum Slot {
    /// A command about the key is on its way; its reply may be cached.
    /// `trusted` until a message about the key arrives meanwhile (which may
    /// be about that very command).
    Pending { ticket: Ticket, trusted: bool },
    /// The record as Redis held it. `trusted`: as Redis holds it now, since
    /// no message about the key came since; otherwise (the message may be
    /// about this instance's own write) it is used only after a check of
    /// its stamp (revision and expiry) against Redis.
    Copy { record: Record, trusted: bool },
}

impl Slot {
    /// A message may have been missed or may be about this key: what the
    /// slot holds, or will hold, is no longer trusted.
    fn distrust(&mut self) {
        match self {
            Slot::Copy { trusted, .. } | Slot::Pending { trusted, .. } => *trusted = false,
        }
    }
}

struct State {
    /// The connection whose messages keep the copies exact.
    link: u64,
    /// Whether that connection has tracking on (else copies are only ever
    /// suspects).
    tracking: bool,
    next_ticket: u64,
    /// Each key's slot, and the ticket that first put it there.
    slots: HashMap<SessionKey, (u64, Slot)>,
    /// Keys with the ticket that first put them in, oldest first, for
    /// eviction; an entry whose key has gone (or come back since) is stale
    /// and skipped.
    order: VecDeque<(SessionKey, u64)>,
    /// Keys with a write of this instance in flight, and how many.
    writing: HashMap<SessionKey, u32>,
}

impl State {
    fn clear(&mut self) {
        self.slots.clear();
        self.order.clear();
    }

    /// Trusts no copy and no reply on its way any more: the messages that
    /// would have told of changes (on a connection that ended) are lost.
    fn distrust(&mut self) {
        for (_, slot) in self.slots.values_mut() {
            slot.distrust();
        }
    }
}

/// Local copies of records, at most `capacity` of them.
pub(super) struct Cache {
    capacity: usize,
    state: Mutex<State>,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            state: Mutex::new(State {
                link: 0,
                tracking: false,
                next_ticket: 0,
                slots: HashMap::new(),
                order: VecDeque::new(),
                writing: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many copies it keeps at most.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the store caches at all (a capacity above zero).
    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// A new connection `link` is in use: the copies made before it are
    /// kept but no longer trusted (each is checked on its next use); new
    /// ones are trusted only if `tracking` is on for it.
    pub(super) fn relink(&self, link: u64, tracking: bool) {
        let mut st = self.state();
        st.link = link;
        st.tracking = tracking;
        st.distrust();
    }

    /// Connection `link` is gone: its messages stop, so its copies are no
    /// longer trusted.
    pub(super) fn unlink(&self, link: u64) {
        let mut st = self.state();
        if st.link == link {
            st.tracking = false;
            st.distrust();
        }
    }

    /// Whether a copy of `key` is held (worth a barrier).
    pub(super) fn holds(&self, key: &SessionKey) -> bool {
        matches!(
            self.state().slots.get(key),
            Some((_, Slot::Copy { trusted: true, .. }))
        )
    }

    /// The copy of `key`, if one is held, live and trusted.
    pub(super) fn get(&self, key: &SessionKey) -> Option<Record> {
        self.copy(key, true)
    }

    /// A live copy of `key` held with this `trust`.
    fn copy(&self, key: &SessionKey, trust: bool) -> Option<Record> {
        match self.state().slots.get(key) {
            Some((_, Slot::Copy { record, trusted }))
                if *trusted == trust && record.expires_at > SystemTime::now() =>
            {
                Some(record.clone())
            }
            _ => None,
        }
    }

    /// Drops the copy of `key`, before a command that reads or changes it
    /// is sent; the ticket lets [`Cache::fill`] cache its outcome. Without
    /// tracking (a Cluster, a server that refused it, between connections)
    /// no message would say that the key changed, so the outcome is cached
    /// as a suspect, checked against Redis on every use.
    pub(super) fn reserve(&self, key: &SessionKey) -> Option<Ticket> {
        if self.capacity == 0 {
            return None;
        }
        let mut st = self.state();
        // During this instance's own write the reply may predate it, and
        // no message would say so: a suspect at best.
        let trusted = st.tracking && !st.writing.contains_key(key);
        st.next_ticket += 1;
        let ticket = Ticket(st.next_ticket);
        let State { slots, order, .. } = &mut *st;
        match slots.get_mut(key) {
            Some((_, slot)) => *slot = Slot::Pending { ticket, trusted },
            None => {
                slots.insert(*key, (ticket.0, Slot::Pending { ticket, trusted }));
                order.push_back((*key, ticket.0));
                // Full: drop the oldest.
                while slots.len() > self.capacity {
                    let Some((old, since)) = order.pop_front() else {
                        break;
                    };
                    if slots.get(&old).is_some_and(|(s, _)| *s == since) {
                        slots.remove(&old);
                    }
                }
                // Stale entries (keys removed by messages) are dropped now
                // and then, so the order stays within twice the capacity.
                if order.len() > 2 * self.capacity {
                    order.retain(|(k, since)| slots.get(k).is_some_and(|(s, _)| s == since));
                }
            }
        }
        Some(ticket)
    }

    /// Caches what Redis holds under `key` now (`None`: nothing), if no
    /// message about the key arrived since `ticket` was handed out.
    pub(super) fn fill(&self, key: &SessionKey, ticket: Option<Ticket>, record: Option<Record>) {
        self.settle(key, ticket, record, true);
    }

    /// Puts back a copy that could not be checked (the check failed on
    /// its way), not trusted, if nothing about `key` happened meanwhile.
    pub(super) fn keep(&self, key: &SessionKey, ticket: Option<Ticket>, record: Record) {
        self.settle(key, ticket, Some(record), false);
    }

    /// Ends the reservation `ticket` of `key`, if it is still the newest:
    /// `record` is cached (trusted if `trust` and no message came
    /// meanwhile), or `None` drops the slot.
    fn settle(
        &self,
        key: &SessionKey,
        ticket: Option<Ticket>,
        record: Option<Record>,
        trust: bool,
    ) {
        let Some(ticket) = ticket else { return };
        let mut st = self.state();
        let Some((_, slot)) = st.slots.get_mut(key) else {
            return;
        };
        let trusted = match slot {
            Slot::Pending { ticket: t, trusted } if *t == ticket => *trusted && trust,
            _ => return,
        };
        match record {
            Some(record) => *slot = Slot::Copy { record, trusted },
            None => {
                st.slots.remove(key);
            }
        }
    }

    /// This instance is about to change `key`: what is held for it (a copy,
    /// a reservation) goes, and until the guard is dropped (the write's
    /// reply is back, or the write failed) no reply about it is trusted.
    pub(super) fn begin_write<'a>(&'a self, keys: &[&SessionKey]) -> WriteGuard<'a> {
        let mut st = self.state();
        for key in keys {
            st.slots.remove(*key);
            *st.writing.entry(**key).or_insert(0) += 1;
        }
        WriteGuard {
            cache: self,
            keys: keys.iter().map(|k| **k).collect(),
        }
    }

    fn end_write(&self, keys: &[SessionKey]) {
        let mut st = self.state();
        for key in keys {
            if let Some(n) = st.writing.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    st.writing.remove(key);
                }
            }
        }
    }

    /// Redis says `key` changed: a copy, or the reply to a command on its
    /// way, is no longer trusted (the change may be this instance's own
    /// save, which Redis reports too): a suspect from now on.
    fn changed(&self, key: &SessionKey) {
        if let Some((_, slot)) = self.state().slots.get_mut(key) {
            slot.distrust();
        }
    }

    /// The suspect copy of `key`, if one is held and live: usable once
    /// Redis confirms its stamp.
    pub(super) fn suspect(&self, key: &SessionKey) -> Option<Record> {
        self.copy(key, false)
    }

    /// Redis says everything may have changed (`FLUSHALL`, `FLUSHDB`).
    fn clear(&self) {
        self.state().clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().slots.len()
    }
}

/// A write of this instance in flight (see [`Cache::begin_write`]); ends
/// when dropped, on every path (a reply, an error, a cancelled request).
pub(super) struct WriteGuard<'a> {
    cache: &'a Cache,
    keys: Vec<SessionKey>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.cache.end_write(&self.keys);
    }
}

/// Applies the invalidation messages of connection `link` to the cache, in
/// the connection's reader.
pub(super) struct Invalidations {
    pub(super) cache: Arc<Cache>,
    pub(super) link: u64,
    /// The store's key prefix: a message names Redis keys.
    pub(super) prefix: String,
}

impl Invalidations {
    fn invalidate(&self, redis_key: &[u8]) {
        let key = redis_key
            .strip_prefix(self.prefix.as_bytes())
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(SessionKey::from_hex);
        if let Some(key) = key {
            self.cache.changed(&key);
        }
    }
}

impl AsyncPushSender for Invalidations {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            Value::BulkString(k) => self.invalidate(k),
                            Value::SimpleString(k) => self.invalidate(k.as_bytes()),
                            _ => self.cache.clear(),
                        }
                    }
                }
                // Null after a flush of the database; anything else unknown.
                _ => self.cache.clear(),
            },
            PushKind::Disconnection => self.cache.unlink(self.link),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(data: &str) -> Option<Record> {
        Some(Record::new(
            data.as_bytes().to_vec(),
            1,
            SystemTime::now() + Duration::from_secs(60),
        ))
    }

    fn message(cache: &Arc<Cache>, key: &SessionKey) {
        let push = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![Value::BulkString(
                format!("s:{key}").into_bytes(),
            )])],
        };
        let sender = Invalidations {
            cache: Arc::clone(cache),
            link: 1,
            prefix: "s:".into(),
        };
        sender.send(push).unwrap();
    }

    #[test]
    fn a_message_between_send_and_reply_keeps_the_reply_out() {
        let cache = Arc::new(Cache::new(10));
        let key = SessionKey::from_bytes([1; 32]);
        let ticket = cache.reserve(&key);
        cache.fill(&key, ticket, record("untracked"));
        assert!(
            cache.get(&key).is_none(),
            "no tracking yet: no trusted copy"
        );
        assert_eq!(
            cache.suspect(&key).unwrap().data,
            "untracked".as_bytes(),
            "only one to check"
        );
        assert_eq!(Cache::new(0).reserve(&key), None, "capacity 0: no copy");
        cache.relink(1, true);
        assert!(
            cache.suspect(&key).is_some(),
            "a new link keeps the copy, still to be checked"
        );

        let ticket = cache.reserve(&key);
        cache.fill(&key, ticket, record("a"));
        assert_eq!(cache.get(&key).unwrap().data, "a".as_bytes());

        let ticket = cache.reserve(&key);
        assert!(cache.get(&key).is_none(), "reserving drops the copy");
        message(&cache, &key);
        cache.fill(&key, ticket, record("stale"));
        assert!(
            cache.get(&key).is_none(),
            "the reply may predate the change"
        );
        assert_eq!(
            cache.suspect(&key).unwrap().data,
            "stale".as_bytes(),
            "kept to be checked against Redis before use"
        );

        let (first, second) = (cache.reserve(&key), cache.reserve(&key));
        cache.fill(&key, first, record("older"));
        assert!(
            cache.get(&key).is_none(),
            "only the newest reservation fills"
        );
        cache.fill(&key, second, record("b"));
        message(&cache, &SessionKey::from_bytes([2; 32]));
        assert_eq!(
            cache.get(&key).unwrap().data,
            "b".as_bytes(),
            "other keys' messages"
        );
        message(&cache, &key);
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.suspect(&key).unwrap().data, "b".as_bytes());
        drop(cache.begin_write(&[&key]));
        assert!(cache.suspect(&key).is_none(), "this instance changes it");
    }

    /// Finding (issue 22, item 1): a delete dropped the copy, then sent
    /// `DEL`; a load of the same key starting between the two could reach
    /// Redis first, and its reply (the deleted record) was kept as a trusted
    /// copy, since `NOLOOP` keeps this connection's own `DEL` unreported.
    /// The reply to a read that starts during this instance's own write is
    /// never trusted, whatever order Redis saw them in.
    #[test]
    fn a_read_during_an_own_write_is_never_trusted() {
        let cache = Arc::new(Cache::new(10));
        cache.relink(1, true);
        let key = SessionKey::from_bytes([7; 32]);
        let ticket = cache.reserve(&key);
        cache.fill(&key, ticket, record("live"));
        assert!(cache.get(&key).is_some());

        // delete: the mark, then (a load's GET lands first, its reply
        // comes back after the DEL's), then the DEL's reply.
        let writing = cache.begin_write(&[&key]);
        let read = cache.reserve(&key);
        cache.fill(&key, read, record("deleted"));
        drop(writing);
        assert!(cache.get(&key).is_none(), "a stale copy was trusted");
        assert_eq!(
            cache.suspect(&key).unwrap().data,
            "deleted".as_bytes(),
            "kept only to be checked (a GETRANGE finds it gone)"
        );

        // The reply arrives after the write is over: the same.
        let writing = cache.begin_write(&[&key]);
        let read = cache.reserve(&key);
        drop(writing);
        cache.fill(&key, read, record("older"));
        assert!(cache.get(&key).is_none());

        // A read that started before the write loses its reservation.
        let read = cache.reserve(&key);
        let writing = cache.begin_write(&[&key]);
        cache.fill(&key, read, record("before"));
        drop(writing);
        assert!(cache.get(&key).is_none() && cache.suspect(&key).is_none());

        // Two writes in flight (a save and a delete): trusted only after both.
        let (w1, w2) = (cache.begin_write(&[&key]), cache.begin_write(&[&key]));
        drop(w1);
        let read = cache.reserve(&key);
        cache.fill(&key, read, record("between"));
        drop(w2);
        assert!(cache.get(&key).is_none());

        // After the writes, a read is trusted again.
        let read = cache.reserve(&key);
        cache.fill(&key, read, record("after"));
        assert_eq!(cache.get(&key).unwrap().data, "after".as_bytes());
        assert!(cache.state().writing.is_empty());
    }

    #[test]
    fn a_copy_whose_check_failed_is_kept_untrusted() {
        let cache = Arc::new(Cache::new(10));
        cache.relink(1, true);
        let key = SessionKey::from_bytes([5; 32]);
        let ticket = cache.reserve(&key);
        cache.keep(&key, ticket, record("kept").unwrap());
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.suspect(&key).unwrap().data, "kept".as_bytes());

        let ticket = cache.reserve(&key);
        drop(cache.begin_write(&[&key]));
        cache.keep(&key, ticket, record("late").unwrap());
        assert!(
            cache.suspect(&key).is_none(),
            "this instance changed it meanwhile"
        );
    }

    #[test]
    fn flushes_disconnections_capacity_and_expiry() {
        let cache = Arc::new(Cache::new(2));
        cache.relink(1, true);
        let keys: Vec<_> = (0..3).map(|n| SessionKey::from_bytes([n; 32])).collect();
        for k in &keys {
            let t = cache.reserve(k);
            cache.fill(k, t, record("x"));
        }
        assert_eq!(cache.len(), 2, "bounded");
        assert!(cache.get(&keys[0]).is_none(), "the oldest went first");
        for _ in 0..10 {
            // A key that messages keep removing does not grow the order.
            message(&cache, &keys[2]);
            let t = cache.reserve(&keys[2]);
            cache.fill(&keys[2], t, record("y"));
        }
        assert!(cache.state().order.len() <= 4);
        assert!(cache.get(&keys[1]).is_some() && cache.get(&keys[2]).is_some());

        let flush = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        };
        let sender = |link| Invalidations {
            cache: Arc::clone(&cache),
            link,
            prefix: "s:".into(),
        };
        sender(1).send(flush).unwrap();
        assert_eq!(cache.len(), 0, "FLUSHALL");

        let t = cache.reserve(&keys[0]);
        cache.fill(&keys[0], t, record("x"));
        cache.relink(2, true);
        assert!(
            cache.get(&keys[0]).is_none() && cache.suspect(&keys[0]).is_some(),
            "a copy from before a new link is kept, to be checked"
        );
        let t = cache.reserve(&keys[0]);
        cache.fill(&keys[0], t, record("y"));
        sender(1)
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            })
            .unwrap();
        assert!(
            cache.get(&keys[0]).is_some(),
            "an old link's end leaves the new one alone"
        );
        sender(2)
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            })
            .unwrap();
        assert_eq!(
            cache.suspect(&keys[0]).unwrap().data,
            "y".as_bytes(),
            "the current link's end: the copy is kept, no longer trusted"
        );
        let t = cache.reserve(&keys[0]);
        cache.fill(&keys[0], t, record("z"));
        assert!(
            cache.get(&keys[0]).is_none() && cache.suspect(&keys[0]).is_some(),
            "after the current link's end, copies are only suspects"
        );

        cache.relink(3, true);
        let t = cache.reserve(&keys[1]);
        let expired = Record::new(
            "old".as_bytes().to_vec(),
            1,
            SystemTime::now() - Duration::from_secs(1),
        );
        cache.fill(&keys[1], t, Some(expired));
        assert!(cache.holds(&keys[1]));
        assert!(
            cache.get(&keys[1]).is_none(),
            "an expired copy is never used"
        );
    }
}
