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
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST};
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
    /// `userinfo` (`user:password` from a URL) goes as `Authorization: Basic`, as curl
    /// sends it; it is never part of the name looked up.
    Tcp {
        host: &'a str,
        port: u16,
        userinfo: Option<&'a str>,
    },
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
        Target::Tcp { host, port, userinfo } => {
            let addr = resolve(host, *port).await?;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let basic = userinfo.map(|userinfo| format!("Basic {}", STANDARD.encode(userinfo)));
            send(stream, &authority(host, *port), basic.as_deref(), method, path).await
        }
        Target::Unix(path_of_socket) => {
            let stream = tokio::net::UnixStream::connect(path_of_socket).await?;
            send(stream, "localhost", None, method, path).await
        }
    }
}

/// An `http://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// `user:password` before `@`, sent as Basic auth (never looked up as a name).
    pub userinfo: Option<String>,
}

impl Url {
    pub fn target(&self) -> Target<'_> {
        Target::Tcp {
            host: &self.host,
            port: self.port,
            userinfo: self.userinfo.as_deref(),
        }
    }
}

/// `http://[user:password@]host[:port]/path`; port 80 when absent.
pub fn split_url(url: &str) -> Option<Url> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo.to_string()), host),
        None => (None, authority),
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
    (!host.is_empty()).then_some(Url {
        host,
        port,
        path,
        userinfo,
    })
}

/// `request` to an `http://HOST[:PORT]/PATH` URL (from the config); errors name the URL
/// (its userinfo redacted).
pub fn request_url(method: &str, url: &str, timeout: Duration) -> Result<Answer, String> {
    let shown = || crate::redact::urls(url).into_owned();
    let parts = split_url(url).ok_or_else(|| format!("{}: expected http://HOST[:PORT]/PATH", shown()))?;
    request(&parts.target(), method, &parts.path, timeout).map_err(|error| format!("{}: {error}", shown()))
}

/// Inside the request's deadline: a name is looked up on the runtime's blocking pool, so a
/// slow resolver cannot outlast the timeout (an address literal is not looked up at all).
async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
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

async fn send<S>(stream: S, host: &str, basic: Option<&str>, method: &str, path: &str) -> io::Result<Answer>
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
    let mut request = Request::builder().method(method).uri(path).header(HOST, host);
    if let Some(basic) = basic {
        request = request.header(AUTHORIZATION, basic);
    }
    let request = request
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
                userinfo: None,
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
            userinfo: None,
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

    fn url(host: &str, port: u16, path: &str, userinfo: Option<&str>) -> Option<Url> {
        Some(Url {
            host: host.into(),
            port,
            path: path.into(),
            userinfo: userinfo.map(Into::into),
        })
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9090/ready"),
            url("127.0.0.1", 9090, "/ready", None)
        );
        assert_eq!(split_url("http://[::1]:8080/alive"), url("::1", 8080, "/alive", None));
        assert_eq!(split_url("http://example:81"), url("example", 81, "/", None));
        assert_eq!(split_url("http://h?x=1"), url("h", 80, "/?x=1", None));
        assert_eq!(split_url("https://x/"), None);
        assert_eq!(split_url("http://:80/"), None);
        assert_eq!(split_url("http://h:notaport/"), None);
    }

    /// Found in review: the userinfo was looked up as part of the host name, so such a URL
    /// never answered, and a resolver error would have shown the password.
    #[test]
    fn userinfo_is_never_part_of_the_host() {
        assert_eq!(
            split_url("http://user:p@ss@127.0.0.1:81/h"),
            url("127.0.0.1", 81, "/h", Some("user:p@ss"))
        );
        assert_eq!(split_url("http://u@[::1]/"), url("::1", 80, "/", Some("u")));
    }

    #[test]
    fn userinfo_is_sent_as_basic_auth() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
            String::from_utf8_lossy(&head).to_lowercase()
        });
        let answer = request_url(
            "GET",
            &format!("http://app:s3cret@127.0.0.1:{port}/x"),
            Duration::from_secs(10),
        );
        assert_eq!(answer.map(|a| a.status), Ok(204));
        let head = server.join().unwrap();
        // base64("app:s3cret")
        assert!(head.contains("authorization: basic yxbwonmzy3jlda=="), "{head}");
        assert!(head.contains(&format!("host: 127.0.0.1:{port}")), "{head}");
    }

    #[test]
    fn errors_of_a_url_with_userinfo_never_show_the_password() {
        let error = request_url("GET", "http://u:hunter2@127.0.0.1:1/", Duration::from_secs(5)).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any text: no panic; a split URL gives a host and a path that starts with `/`.
        #[test]
        fn any_url_splits_or_is_refused(url in "(http://)?\\PC{0,40}") {
            if let Some(Url { host, path, .. }) = split_url(&url) {
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
