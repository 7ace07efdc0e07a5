//! The HTTP/1.1 client of readiness and dependency probes, `http` hooks, `gsup probe` and
//! `gsup ctl`: hyper's own (`hyper::client::conn::http1`), one request per connection,
//! over TCP or the control socket, with one deadline for connecting, writing and reading.
//!
//! What it reads is bounded (DESIGN §5): the status line and headers (hyper's buffer, at
//! most `MAX_HEAD`), then at most `MAX_BODY` of body, kept as bytes. Past that the rest is
//! not read and the connection is dropped: the status alone decides, so a healthy
//! endpoint with a big or endless body stays healthy. A body cut short or garbled after a
//! good status line is the same: the status decides, the body is what arrived.

use std::borrow::Cow;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// The most body bytes an answer keeps; the rest is never read.
pub const MAX_BODY: usize = 64 * 1024;

/// hyper's read buffer: the status line and headers must fit, and no read grows it.
const MAX_HEAD: usize = 64 * 1024;

/// Status and (at most `MAX_BODY` of the) body of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body for people: lossy UTF-8.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// Where to send a request.
pub enum Target<'a> {
    Tcp { host: &'a str, port: u16 },
    Unix(&'a Path),
}

/// Sends `method path` and reads the answer (bounded, see the module), at most `timeout`
/// in all. Blocking: runs its own single-thread runtime, so it may be called from `main`
/// or from a blocking thread of gsup's runtime, never from an async task.
pub fn request(target: &Target<'_>, method: &str, path: &str, timeout: Duration) -> io::Result<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let answer = runtime.block_on(async {
        match tokio::time::timeout(timeout, exchange(target, method, path)).await {
            Ok(answer) => answer,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for the answer",
            )),
        }
    });
    // Drop the runtime, and with it the connection task, here: nothing more is read.
    runtime.shutdown_background();
    answer
}

async fn exchange(target: &Target<'_>, method: &str, path: &str) -> io::Result<Answer> {
    match target {
        Target::Tcp { host, port } => {
            let addr = resolve(host, *port)?;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            send(stream, &authority(host, *port), method, path).await
        }
        Target::Unix(path_of_socket) => {
            let stream = tokio::net::UnixStream::connect(path_of_socket).await?;
            send(stream, "localhost", method, path).await
        }
    }
}

/// `http://host:port/path` → (host, port, path); port 80 when absent.
pub fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => 80,
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (authority.to_string(), 80),
        }
    };
    (!host.is_empty()).then_some((host, port, path))
}

/// `request` to an `http://HOST[:PORT]/PATH` URL (from the config); errors name the URL.
pub fn request_url(method: &str, url: &str, timeout: Duration) -> Result<Answer, String> {
    let (host, port, path) = split_url(url).ok_or_else(|| format!("{url}: expected http://HOST[:PORT]/PATH"))?;
    request(&Target::Tcp { host: &host, port }, method, &path, timeout).map_err(|error| format!("{url}: {error}"))
}

/// Blocking, as before: a name here is a config value, nearly always an address or
/// `localhost`.
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host}")))
}

/// The `Host` header: an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn send<S>(stream: S, host: &str, method: &str, path: &str) -> io::Result<Answer>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    // The connection runs beside the exchange; it ends with the runtime (`request`).
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .header(CONNECTION, "close")
        .header(CONTENT_LENGTH, "0")
        .body(Empty::new())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_BODY - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            // Cut short or garbled after the head: the status decides.
            Some(Err(_)) | None => break,
        }
    }
    Ok(Answer { status, body: kept })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-connection server that reads the request head and writes `answer`.
    fn serve_once(answer: Vec<u8>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = stream.write_all(&answer);
        });
        port
    }

    fn ask(answer: &[u8]) -> io::Result<Answer> {
        let port = serve_once(answer.to_vec());
        request(
            &Target::Tcp {
                host: "127.0.0.1",
                port,
            },
            "GET",
            "/",
            Duration::from_secs(10),
        )
    }

    #[test]
    fn reads_plain_and_chunked_answers() {
        let plain = ask(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            plain,
            Answer {
                status: 503,
                body: b"{}".to_vec()
            }
        );
        let chunked =
            ask(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(chunked.body, b"abcde");
        assert!(ask(b"garbage\r\n\r\n").is_err());
    }

    /// The finding: a chunk of one byte that is half of `é` (and then nothing) panicked
    /// the old client's parser ("not a char boundary").
    #[test]
    fn half_a_character_in_a_chunk_is_bytes_and_the_status_decides() {
        let answer = ask("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\né".as_bytes()).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "é".as_bytes()[..1].to_vec());
        assert_eq!(answer.text(), "\u{fffd}");
    }

    /// A head that never ends is refused once it outgrows the buffer, long before the
    /// deadline (the server would write forever).
    #[test]
    fn an_endless_head_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
            let header = format!("x-filler: {}\r\n", "y".repeat(1000));
            while stream.write_all(header.as_bytes()).is_ok() {}
        });
        let started = std::time::Instant::now();
        let target = Target::Tcp {
            host: "127.0.0.1",
            port,
        };
        let error = request(&target, "GET", "/", Duration::from_secs(60)).unwrap_err();
        assert_ne!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(started.elapsed() < Duration::from_secs(30), "{error}");
    }

    #[test]
    fn a_big_body_is_kept_up_to_the_bound() {
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 3 * MAX_BODY).into_bytes();
        answer.resize(answer.len() + 3 * MAX_BODY, b'x');
        let answer = ask(&answer).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.len(), MAX_BODY);
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9090/ready"),
            Some(("127.0.0.1".into(), 9090, "/ready".into()))
        );
        assert_eq!(
            split_url("http://[::1]:8080/alive"),
            Some(("::1".into(), 8080, "/alive".into()))
        );
        assert_eq!(split_url("http://example:81"), Some(("example".into(), 81, "/".into())));
        assert_eq!(split_url("https://x/"), None);
        assert_eq!(split_url("http://:80/"), None);
        assert_eq!(split_url("http://h:notaport/"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any text: no panic; a split URL gives a host and a path that starts with `/`.
        #[test]
        fn any_url_splits_or_is_refused(url in "(http://)?\\PC{0,40}") {
            if let Some((host, _, path)) = split_url(&url) {
                proptest::prop_assert!(!host.is_empty() && path.starts_with('/'));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever a server answers, the client returns (an answer or an error), never
        /// panics, and keeps at most `MAX_BODY` bytes.
        #[test]
        fn any_answer_is_handled(
            status in 100u16..600,
            chunked in proptest::bool::ANY,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let encoding = if chunked { "transfer-encoding: chunked\r\n" } else { "" };
            let mut answer = format!("HTTP/1.1 {status} X\r\n{encoding}\r\n").into_bytes();
            answer.extend_from_slice(&tail);
            if let Ok(answer) = ask(&answer) {
                proptest::prop_assert!(answer.body.len() <= MAX_BODY);
            }
            // Raw garbage, head included.
            let _ = ask(&tail);
        }
    }
}
