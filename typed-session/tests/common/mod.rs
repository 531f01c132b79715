//! A small HTTP/1.1 client over a real TCP socket, and a server harness:
//! the tests talk to axum on 127.0.0.1 exactly as a browser would.

#![allow(dead_code, unreachable_pub, unused_macros)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running axum server on a free loopback port.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(app: axum::Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, task }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every `Set-Cookie`, parsed.
    pub fn cookies(&self) -> Vec<cookie::Cookie<'static>> {
        self.set_cookies()
            .into_iter()
            .map(|c| cookie::Cookie::parse(c.to_owned()).expect("a well-formed Set-Cookie"))
            .collect()
    }

    /// The `name=value` pair of the first `Set-Cookie`, for sending back.
    pub fn cookie(&self) -> Option<String> {
        self.cookies()
            .first()
            .map(|c| format!("{}={}", c.name(), c.value()))
    }

    /// `true` when the response removes the cookie.
    pub fn removes_cookie(&self) -> bool {
        self.cookies()
            .iter()
            .any(|c| c.max_age() == Some(cookie::time::Duration::ZERO))
    }
}

/// Sends one request on a new connection, through hyper's HTTP/1.1
/// client over a real socket. `cookie_headers` are sent as separate
/// `Cookie:` lines; one that is not a valid header value (a NUL, a
/// newline: what only an attacker sends) goes out as raw bytes instead,
/// since hyper refuses to send it.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie_headers: &[&str],
) -> Response {
    let values: Option<Vec<http::HeaderValue>> = cookie_headers
        .iter()
        .map(|c| http::HeaderValue::from_bytes(c.as_bytes()).ok())
        .collect();
    let Some(values) = values else {
        return raw_request(addr, method, path, cookie_headers).await;
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "127.0.0.1");
    for value in values {
        req = req.header(http::header::COOKIE, value);
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a valid request");
    let exchange = async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP/1.1 handshake");
        let driver = tokio::spawn(conn);
        let res = sender.send_request(req).await.expect("a response");
        let (parts, body) = res.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .expect("the whole body")
            .to_bytes();
        driver.abort();
        (parts, body)
    };
    let (parts, body) = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("response within 10 s");
    Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends a request written byte by byte (for headers no client library
/// would send), and parses the response with `httparse`, hyper's parser.
async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie_headers: &[&str],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for c in cookie_headers {
        req.push_str("Cookie: ");
        req.push_str(c);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read");
    parse(&raw)
}

pub async fn http_get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Response {
    request(addr, "GET", path, cookie.as_slice()).await
}

pub async fn http_post(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Response {
    request(addr, "POST", path, cookie.as_slice()).await
}

/// A whole HTTP/1.1 response as read from a socket: the head parsed by
/// `httparse`, a chunked body decoded.
pub fn parse(raw: &[u8]) -> Response {
    let mut header_slots = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut header_slots);
    let body_at = match head.parse(raw).expect("a valid response head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("incomplete response head"),
    };
    let status = head.code.expect("status code");
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    let body = String::from_utf8_lossy(&raw[body_at..]);
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(&body)
    } else {
        body.into_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(feature = "file-store")]
pub mod file;
pub mod harness;
pub mod http_suite;
#[cfg(feature = "redis-store")]
pub mod redis;
#[cfg(feature = "cookie-store")]
pub mod sealed;
#[macro_use]
pub mod store_suite;
