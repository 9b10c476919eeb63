//! A small HTTP/1.1 server for what operators read with Prometheus or a browser (the metrics
//! endpoint). GET and HEAD only, one request per connection (`Connection: close`), the
//! request head bounded in size and time, a bounded number of connections at once: it is a
//! window onto the process, never a way to load it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The request head's limit: a head longer is answered 431 and the connection closed.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT_MS: u64 = 10_000;
/// Connections served at once; beyond, a new one is answered 503 and closed.
pub const CONNECTIONS_MAX: usize = 64;
/// How long a connection may take in all (its head, the answer being made, the answer read):
/// past it, it is closed, so a client that stops reading cannot hold a slot.
pub const CONNECTION_TIMEOUT_MS: u64 = 30_000;

/// A request: its method, path and query (the part after `?`, without it), and its `Host`
/// header's value if it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub host: Option<String>,
}

impl HttpRequest {
    /// The host name of its `Host` header (the port and an IPv6 address's brackets removed).
    pub fn host_name(&self) -> Option<&str> {
        let host = self.host.as_deref()?;
        if let Some(rest) = host.strip_prefix('[') {
            return rest.split(']').next();
        }
        host.split(':').next()
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse { status: 200, content_type, body: body.into() }
    }

    pub fn not_found() -> Self {
        HttpResponse::text(404, "not found\n")
    }

    pub fn text(status: u16, body: &str) -> Self {
        HttpResponse { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// What answers the server's requests.
pub type HttpHandler =
    Arc<dyn Fn(HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> + Send + Sync>;

/// A running HTTP server; dropping it stops accepting (requests being answered finish).
pub struct HttpServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl HttpServer {
    /// Serves `handler` on `listener`.
    pub fn start(listener: TcpListener, handler: HttpHandler) -> std::io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(accept(listener, handler, stopped));
        Ok(HttpServer { addr, stop })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept(
    listener: TcpListener,
    handler: HttpHandler,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let slot = Slot::take(&open);
        tokio::spawn(async move {
            let busy = slot.0 > CONNECTIONS_MAX;
            let all = Duration::from_millis(CONNECTION_TIMEOUT_MS);
            let _ = tokio::time::timeout(all, serve(stream, handler, busy)).await;
            drop(slot);
        });
    }
}

/// One connection's place in the count, given back when dropped (a handler that panics
/// included).
struct Slot(usize, Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        Slot(open.fetch_add(1, Ordering::Relaxed) + 1, open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(mut stream: TcpStream, handler: HttpHandler, busy: bool) {
    let response = if busy {
        HttpResponse::text(503, "too many connections\n")
    } else {
        let head =
            tokio::time::timeout(Duration::from_millis(HEAD_TIMEOUT_MS), read_head(&mut stream))
                .await;
        match head {
            Err(_) => HttpResponse::text(408, "request timeout\n"),
            Ok(Err(answer)) => answer,
            Ok(Ok(head)) => match parse_request(&head) {
                Ok(req) if req.method == "GET" || req.method == "HEAD" => {
                    let head_only = req.method == "HEAD";
                    let r = handler(req).await;
                    let _ = write_response(&mut stream, &r, !head_only).await;
                    return;
                }
                Ok(_) => HttpResponse::text(405, "only GET and HEAD\n"),
                Err(answer) => answer,
            },
        }
    };
    let _ = write_response(&mut stream, &response, true).await;
}

/// Reads up to the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HttpResponse> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|_| HttpResponse::text(400, "unreadable request\n"))?;
        if n == 0 {
            return Err(HttpResponse::text(400, "incomplete request\n"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > HEAD_BYTES_MAX {
            return Err(HttpResponse::text(431, "request head too large\n"));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request line of a head: `METHOD target HTTP/1.x`.
pub fn parse_request(head: &[u8]) -> Result<HttpRequest, HttpResponse> {
    let bad = || HttpResponse::text(400, "bad request line\n");
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| bad())?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(bad());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let host = String::from_utf8_lossy(&head[line_end..]).lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim().to_owned())
    });
    Ok(HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        host,
    })
}

async fn write_response(
    stream: &mut TcpStream,
    r: &HttpResponse,
    with_body: bool,
) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(&r.body).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_strictly() {
        let r = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nAccept: */*\r\nhost: a:80").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("GET", "/metrics", "x=1")
        );
        assert_eq!((r.host.as_deref(), r.host_name()), (Some("a:80"), Some("a")));
        let v6 = parse_request(b"GET / HTTP/1.1\r\nHost: [::1]:8088").unwrap();
        assert_eq!(v6.host_name(), Some("::1"));
        assert_eq!(parse_request(b"GET / HTTP/1.0").unwrap().host_name(), None);
        for bad in [
            &b"GET /metrics"[..],
            b"GET  / HTTP/1.1",
            b"GET metrics HTTP/1.1",
            b"GET / SPDY/3",
            b"\xff / HTTP/1.1",
        ] {
            assert_eq!(parse_request(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }

    async fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_handler_that_panics_gives_its_connection_slot_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handler: HttpHandler = Arc::new(|req: HttpRequest| {
            Box::pin(async move {
                assert!(req.path != "/panic", "a handler bug");
                HttpResponse::ok("text/plain", "fine")
            })
        });
        let server = HttpServer::start(listener, handler).unwrap();
        let addr = server.local_addr();
        for _ in 0..CONNECTIONS_MAX + 5 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /panic HTTP/1.1\r\n\r\n").await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
        }
        let ok = get(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    }

    #[tokio::test]
    async fn serves_gets_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handler: HttpHandler = Arc::new(|req: HttpRequest| {
            Box::pin(async move {
                match req.path.as_str() {
                    "/metrics" => HttpResponse::ok("text/plain", format!("q={}", req.query)),
                    _ => HttpResponse::not_found(),
                }
            })
        });
        let server = HttpServer::start(listener, handler).unwrap();
        let addr = server.local_addr();
        let ok = get(addr, b"GET /metrics?a HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 3\r\n") && ok.ends_with("\r\n\r\nq=a"), "{ok}");
        let head = get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(get(addr, b"GET /nope HTTP/1.0\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405"));
        assert!(get(addr, b"nonsense\r\n\r\n").await.starts_with("HTTP/1.1 400"));
        let long = [b"GET /".as_slice(), &vec![b'a'; HEAD_BYTES_MAX + 10]].concat();
        assert!(get(addr, &long).await.starts_with("HTTP/1.1 431"));
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "the listener closes with the server");
    }
}
