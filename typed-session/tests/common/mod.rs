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

    /// The `name=value` pair of the first `Set-Cookie`, for sending back.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookies().first().map(|c| {
            c.split(';')
                .next()
                .expect("one part at least")
                .trim()
                .to_owned()
        })
    }

    /// `true` when the response removes the cookie.
    pub fn removes_cookie(&self) -> bool {
        self.set_cookies().iter().any(|c| c.contains("Max-Age=0"))
    }
}

/// Sends one request on a new connection. `cookie_headers` are sent as
/// separate `Cookie:` lines.
pub async fn request(
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

pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("complete response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
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
