//! The session cookie on the wire: its settings, finding it in a request's
//! `Cookie` headers, and building the response's `Set-Cookie`.

use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::expiry::clamp_cookie_lifetime;

/// Longest cookie value looked at; anything longer is not ours (4 KiB is the
/// browsers' limit for a whole cookie).
pub(crate) const MAX_COOKIE_VALUE: usize = 4096;
/// Cookies looked at per request. Browsers send at most 180 or so per host;
/// a header with thousands is hostile, and scanning it all would make every
/// session route pay for its size.
const MAX_COOKIES: usize = 256;

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations (the default).
    #[default]
    Lax,
    /// Sent on same-site requests only.
    Strict,
    /// Sent on cross-site requests too; needs `Secure`.
    None,
}

/// How the session cookie is named and sent.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    /// `Some` when set explicitly; `None` turns the `__Host-` prefix on
    /// whenever it can work (`Secure`, `Path=/`, no `Domain`).
    pub(crate) host_prefix: Option<bool>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: Option<Duration>,
    /// The name as sent: `name`, or `__Host-name` with the prefix; kept in
    /// step by [`CookieSettings::refresh`] so requests do not rebuild it.
    full_name: String,
    /// The attributes every `Set-Cookie` carries (`; Path=/; Secure; ...`),
    /// kept in step the same way.
    attributes: String,
}

/// What the request's cookie header holds for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieIn<'a> {
    /// No cookie of ours.
    Absent,
    /// Ours, but unusable: oversized, or sent twice with different values.
    Invalid,
    /// Ours: the raw value, for the backend to verify or open.
    Value(&'a str),
}

/// What the response must do with the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieOut {
    /// Send this value.
    Set {
        value: CookieValue,
        max_age: Option<Duration>,
    },
    /// Tell the browser to drop the cookie.
    Remove,
}

/// A cookie's value: built for this response (a signed id), or shared with
/// the session's state (a sealed session: not copied again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieValue {
    Owned(String),
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    Shared(std::sync::Arc<str>),
}

impl CookieValue {
    fn as_str(&self) -> &str {
        match self {
            CookieValue::Owned(s) => s,
            CookieValue::Shared(s) => s,
        }
    }
}

impl From<&str> for CookieValue {
    fn from(value: &str) -> Self {
        CookieValue::Owned(value.to_owned())
    }
}

fn attribute_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b','))
}

impl CookieSettings {
    pub(crate) fn new(name: String) -> Self {
        let mut settings = CookieSettings {
            name,
            host_prefix: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age: None,
            full_name: String::new(),
            attributes: String::new(),
        };
        settings.refresh();
        settings
    }

    /// Whether the `__Host-` prefix is on.
    pub(crate) fn host_prefixed(&self) -> bool {
        self.host_prefix
            .unwrap_or(self.secure && self.path == "/" && self.domain.is_none())
    }

    /// Recomputes the derived name after a change.
    pub(crate) fn refresh(&mut self) {
        let prefixed = self.host_prefixed();
        self.full_name = if prefixed {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        };
        let mut attributes = String::from("; Path=");
        attributes.push_str(if prefixed { "/" } else { &self.path });
        if let (Some(domain), false) = (&self.domain, prefixed) {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        if self.http_only {
            attributes.push_str("; HttpOnly");
        }
        if self.secure || prefixed {
            attributes.push_str("; Secure");
        }
        attributes.push_str(match self.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
        });
        self.attributes = attributes;
    }

    /// The name as sent.
    pub(crate) fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Every rule on cookie settings; the config and the builder both run it.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_cookie_name(&self.name)?;
        if self.path.is_empty() || !self.path.starts_with('/') || !attribute_ok(&self.path) {
            return Err(ConfigError::InvalidCookieAttribute {
                attribute: "path",
                value: self.path.clone(),
            });
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty() || !attribute_ok(domain))
        {
            return Err(ConfigError::InvalidCookieAttribute {
                attribute: "domain",
                value: domain.clone(),
            });
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        if self.host_prefix == Some(true)
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(ConfigError::HostPrefixMismatch);
        }
        if self.max_age == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroDuration("max_age_secs"));
        }
        Ok(())
    }

    /// Finds our cookie in the request headers: at most one value (the same
    /// value sent twice is fine; two different values are refused, since one
    /// of them may have been planted by a sibling subdomain).
    pub(crate) fn find<'h>(&self, headers: &'h HeaderMap) -> CookieIn<'h> {
        let name = self.full_name.as_str();
        let mut found: Option<&str> = None;
        let mut seen = 0usize;
        for value in headers.get_all(COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for cookie in cookie::Cookie::split_parse(text) {
                seen += 1;
                if seen > MAX_COOKIES {
                    break;
                }
                let Ok(cookie) = cookie else { continue };
                if cookie.name() != name {
                    continue;
                }
                // The raw value borrows from the header; our values need no quoting.
                let Some(v) = cookie.value_raw() else {
                    return CookieIn::Invalid;
                };
                match found {
                    None => found = Some(v),
                    Some(prev) if prev == v => {}
                    Some(_) => return CookieIn::Invalid,
                }
            }
        }
        match found {
            None => CookieIn::Absent,
            Some(v) if v.len() > MAX_COOKIE_VALUE => CookieIn::Invalid,
            Some(v) => CookieIn::Value(v),
        }
    }

    /// The `Set-Cookie` header for `out`, written straight into one buffer
    /// (the attributes were assembled once, by `refresh`).
    pub(crate) fn header(&self, out: CookieOut) -> Option<HeaderValue> {
        let (value, max_age) = match &out {
            CookieOut::Set { value, max_age } => (value.as_str(), *max_age),
            CookieOut::Remove => ("", None),
        };
        let mut header = String::with_capacity(
            self.full_name.len() + 1 + value.len() + self.attributes.len() + 48,
        );
        header.push_str(&self.full_name);
        header.push('=');
        header.push_str(value);
        header.push_str(&self.attributes);
        if value.is_empty() {
            header.push_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        } else if let Some(age) = max_age {
            use std::fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = write!(header, "; Max-Age={}", clamp_cookie_lifetime(age).as_secs());
        }
        match HeaderValue::from_maybe_shared(bytes::Bytes::from(header)) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::error!("session cookie settings produce an invalid header");
                None
            }
        }
    }
}

pub(crate) fn check_cookie_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidCookieName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                map.append(COOKIE, v);
            }
        }
        map
    }

    #[test]
    fn finds_one_value_and_refuses_two() {
        let s = CookieSettings::new("session".into());
        let name = s.full_name().to_owned();
        assert_eq!(
            name, "__Host-session",
            "Secure is on: the prefix by default"
        );
        let one = format!("a=1; {name}=v; b=2");
        assert_eq!(s.find(&headers(&[&one])), CookieIn::Value("v"));
        let twice = format!("{name}=v; {name}=v");
        assert_eq!(s.find(&headers(&[&twice])), CookieIn::Value("v"));
        for (a, b) in [("v", "w"), ("w", "v")] {
            let two = format!("{name}={a}; {name}={b}");
            assert_eq!(s.find(&headers(&[&two])), CookieIn::Invalid);
        }
        assert_eq!(
            s.find(&headers(&["session=v"])),
            CookieIn::Absent,
            "unprefixed is another cookie"
        );
    }

    #[test]
    fn stops_after_a_bounded_number_of_cookies() {
        let s = CookieSettings::new("session".into());
        let mut many: String = (0..10_000).map(|i| format!("c{i}=x; ")).collect();
        many.push_str(&format!("{}=v", s.full_name()));
        assert_eq!(
            s.find(&headers(&[&many])),
            CookieIn::Absent,
            "past the bound"
        );
        let early = format!("{}=v; {many}", s.full_name());
        assert_eq!(s.find(&headers(&[&early])), CookieIn::Value("v"));
    }

    #[test]
    fn attributes_cannot_be_injected() {
        for path in ["/a;Domain=evil.test", "/a b", "/\u{7}", "relative", ""] {
            let mut s = CookieSettings::new("session".into());
            s.path = path.to_owned();
            assert!(
                matches!(
                    s.validate(),
                    Err(ConfigError::InvalidCookieAttribute {
                        attribute: "path",
                        ..
                    })
                ),
                "{path:?}"
            );
        }
        for domain in ["example.test; Secure=0", "a,b", "ex\tample", ""] {
            let mut s = CookieSettings::new("session".into());
            s.domain = Some(domain.to_owned());
            assert!(s.validate().is_err(), "{domain:?}");
        }
        let mut s = CookieSettings::new("session".into());
        s.same_site = SameSite::None;
        s.secure = false;
        assert_eq!(s.validate(), Err(ConfigError::SameSiteNoneWithoutSecure));
    }

    #[test]
    fn cookie_lifetimes_are_capped_at_400_days() {
        let s = CookieSettings::new("session".into());
        let out = CookieOut::Set {
            value: "v".into(),
            max_age: Some(Duration::MAX),
        };
        let header = s.header(out).map(|h| h.to_str().map(str::to_owned));
        let text = match header {
            Some(Ok(text)) => text,
            other => panic!("{other:?}"),
        };
        assert!(text.contains("Max-Age=34560000"), "{text}");
    }

    /// The hand-assembled header reads back, through the cookie crate's
    /// parser, as exactly the settings that made it.
    #[test]
    fn headers_parse_back_as_their_settings() {
        for (secure, http_only, domain, path, same_site, max_age) in [
            (true, true, None, "/", SameSite::Lax, None),
            (
                false,
                false,
                Some("example.test"),
                "/app",
                SameSite::Strict,
                Some(3600),
            ),
            (
                true,
                true,
                Some("example.test"),
                "/",
                SameSite::None,
                Some(60),
            ),
        ] {
            let mut s = CookieSettings::new("session".into());
            s.secure = secure;
            s.http_only = http_only;
            s.domain = domain.map(str::to_owned);
            s.path = path.to_owned();
            s.same_site = same_site;
            s.refresh();
            let out = CookieOut::Set {
                value: "abc.DEF-_".into(),
                max_age: max_age.map(Duration::from_secs),
            };
            let text = s.header(out).unwrap().to_str().unwrap().to_owned();
            let c = cookie::Cookie::parse(text.clone()).unwrap();
            assert_eq!(c.name(), s.full_name(), "{text}");
            assert_eq!(c.value(), "abc.DEF-_", "{text}");
            assert_eq!(c.secure(), secure.then_some(true), "{text}");
            assert_eq!(c.http_only(), http_only.then_some(true), "{text}");
            assert_eq!(c.domain(), domain, "{text}");
            assert_eq!(c.path(), Some(path), "{text}");
            let want = match same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            };
            assert_eq!(c.same_site(), Some(want), "{text}");
            assert_eq!(
                c.max_age(),
                max_age.map(|m| cookie::time::Duration::seconds(m as i64)),
                "{text}"
            );
            let removal = s
                .header(CookieOut::Remove)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let c = cookie::Cookie::parse(removal.clone()).unwrap();
            assert_eq!(c.value(), "", "{removal}");
            assert_eq!(c.max_age(), Some(cookie::time::Duration::ZERO), "{removal}");
            assert!(
                c.expires_datetime()
                    .is_some_and(|t| t.unix_timestamp() == 0)
            );
        }
    }
}
