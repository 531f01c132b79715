//! The expiry policy: idle and absolute timeouts turned into deadlines, and
//! the rule that decides when an unchanged session is refreshed.
//!
//! A record's idle deadline is its expiry in the store (`Record::expires_at`),
//! which a `touch` moves without rewriting the bytes; the absolute deadline
//! is its creation time (in the record's header) plus the absolute timeout.

use std::time::Duration;

/// Browsers cap cookie lifetimes at 400 days; so do we, for the cookie and
/// for a record with no timeout at all.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Idle and absolute timeouts of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
}

impl Policy {
    /// When a record written (or touched) at `now`, created at `created`,
    /// expires, in unix ms. With both timeouts off, the session's cookie
    /// lifetime or 400 days.
    pub(crate) fn deadline(&self, created: u64, now: u64, max_age: Option<u64>) -> u64 {
        let idle = self.idle.map(|d| now.saturating_add(millis(d)));
        let absolute = self.absolute.map(|d| created.saturating_add(millis(d)));
        match (idle, absolute) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => {
                let lifetime = max_age
                    .map_or(MAX_LIFETIME, Duration::from_secs)
                    .min(MAX_LIFETIME);
                now.saturating_add(millis(lifetime))
            }
        }
    }

    /// `true` once a record past its deadline (idle) or its absolute
    /// lifetime may no longer be used. Checked by the runtime on every load,
    /// whatever the store does, with the layer's clock.
    pub(crate) fn expired(&self, created: u64, deadline: u64, now: u64) -> bool {
        now >= deadline
            || self
                .absolute
                .is_some_and(|d| now >= created.saturating_add(millis(d)))
    }

    /// An unchanged session is touched (its deadline moved, its bytes not
    /// rewritten) once that would move the deadline by a tenth of the idle
    /// timeout, so reads do not write on every request; the idle timeout is
    /// thus honoured to within 10 %.
    pub(crate) fn needs_touch(&self, created: u64, deadline: u64, now: u64) -> bool {
        self.idle.is_some_and(|idle| {
            self.deadline(created, now, None).saturating_sub(deadline) >= millis(idle) / 10
        })
    }
}

/// The cookie's `Max-Age`, at most 400 days (browsers ignore more).
pub(crate) fn clamp_cookie_lifetime(d: Duration) -> Duration {
    d.min(MAX_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn deadlines_take_the_nearest_timeout() {
        let p = Policy {
            idle: Some(Duration::from_secs(30 * 60)),
            absolute: Some(Duration::from_secs(2 * 3600)),
        };
        assert_eq!(p.deadline(0, 0, None), 30 * MIN);
        assert_eq!(
            p.deadline(0, 100 * MIN, None),
            120 * MIN,
            "capped by the absolute timeout"
        );
        assert!(!p.expired(0, 30 * MIN, 29 * MIN));
        assert!(p.expired(0, 30 * MIN, 30 * MIN));
        assert!(
            p.expired(0, 200 * MIN, 120 * MIN),
            "absolute, whatever the record says"
        );
    }

    #[test]
    fn touches_once_per_tenth_of_the_idle_timeout() {
        let p = Policy {
            idle: Some(Duration::from_secs(100 * 60)),
            absolute: None,
        };
        let deadline = p.deadline(0, 0, None);
        assert!(!p.needs_touch(0, deadline, 9 * MIN));
        assert!(p.needs_touch(0, deadline, 10 * MIN));
        let capped = Policy {
            idle: Some(Duration::from_secs(100 * 60)),
            absolute: Some(Duration::from_secs(100 * 60)),
        };
        let deadline = capped.deadline(0, 50 * MIN, None);
        assert!(
            !capped.needs_touch(0, deadline, 90 * MIN),
            "a capped deadline cannot move"
        );
    }

    #[test]
    fn no_overflow_at_the_extremes() {
        let p = Policy {
            idle: None,
            absolute: None,
        };
        assert_eq!(p.deadline(0, 0, Some(u64::MAX)), millis(MAX_LIFETIME));
        let huge = Policy {
            idle: Some(Duration::MAX),
            absolute: Some(Duration::MAX),
        };
        assert_eq!(huge.deadline(u64::MAX, u64::MAX, None), u64::MAX);
        assert!(!huge.expired(u64::MAX - 1, u64::MAX, u64::MAX - 1));
    }
}
