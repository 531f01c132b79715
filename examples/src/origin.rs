//! Cross-site request refusal: a state-changing request (`POST`, `PUT`,
//! `PATCH`, `DELETE`) that a browser says comes from another site is
//! answered `403` with code 4003 before any handler runs, on the JSON API
//! and the HTML forms alike. A browser says so with `Sec-Fetch-Site:
//! cross-site`, or with an `Origin` whose host is not this request's
//! `Host`. Requests without either header (curl, server-to-server) pass:
//! they carry no ambient cookies of a victim's browser. The forms' CSRF
//! tokens stay, as the second line of defence.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The middleware (`axum::middleware::from_fn(origin::same_origin_writes)`).
pub(crate) async fn same_origin_writes(request: Request, next: Next) -> Response {
    if changes_state(request.method()) && cross_site(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "code": 4003, "error": "cross-site request refused" })),
        )
            .into_response();
    }
    next.run(request).await
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok().and_then(authority), host) {
        (Some(origin), Some(host)) => !same_authority(&origin, host),
        // `Origin: null` (a sandboxed frame, a redirect chain) or no Host.
        _ => true,
    }
}

/// `host[:port]` of an origin (`scheme://host[:port]`), the default port
/// of the scheme dropped.
fn authority(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let rest = rest.trim_end_matches('/');
    Some(
        rest.strip_suffix(default)
            .unwrap_or(rest)
            .to_ascii_lowercase(),
    )
}

fn same_authority(origin: &str, host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let host = host
        .strip_suffix(":80")
        .or_else(|| host.strip_suffix(":443"))
        .unwrap_or(&host);
    origin == host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("a header value"));
        }
        h
    }

    #[test]
    fn what_counts_as_cross_site() {
        let host = ("host", "shop.example:3000");
        assert!(!cross_site(&headers(&[host])), "no browser headers");
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "http://shop.example:3000")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "shop.example"),
            ("origin", "https://SHOP.example:443")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&headers(&[host, ("origin", "null")])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
    }
}
