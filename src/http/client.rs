//! A tiny blocking HTTP/1.1 client for `gsup probe` and `gsup ctl`: one request per
//! connection (`Connection: close`), over TCP or the control socket, with one deadline
//! for connecting, writing and reading. Small on purpose: images get no curl.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::deadline::SaturatingAdd;

/// Status and body of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Where to send a request.
pub enum Target<'a> {
    Tcp { host: &'a str, port: u16 },
    Unix(&'a Path),
}

/// Sends `method path` and waits for the whole answer, at most `timeout` in all.
pub fn request(target: &Target<'_>, method: &str, path: &str, timeout: Duration) -> io::Result<Answer> {
    let deadline = Instant::now().saturating_add(timeout);
    let host = match target {
        Target::Tcp { host, port } => format!("{host}:{port}"),
        Target::Unix(_) => "localhost".to_string(),
    };
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let raw = match target {
        Target::Tcp { host, port } => {
            let addr = (*host, *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host}")))?;
            let mut stream = TcpStream::connect_timeout(&addr, left(deadline)?)?;
            exchange(
                &mut stream,
                &head,
                deadline,
                |s, t| s.set_read_timeout(Some(t)),
                |s, t| s.set_write_timeout(Some(t)),
            )?
        }
        Target::Unix(path) => {
            let mut stream = UnixStream::connect(path)?;
            exchange(
                &mut stream,
                &head,
                deadline,
                |s, t| s.set_read_timeout(Some(t)),
                |s, t| s.set_write_timeout(Some(t)),
            )?
        }
    };
    parse(&raw)
}

fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    } else {
        Ok(left)
    }
}

fn exchange<S: Read + Write>(
    stream: &mut S,
    head: &str,
    deadline: Instant,
    set_read: impl Fn(&S, Duration) -> io::Result<()>,
    set_write: impl Fn(&S, Duration) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    set_write(stream, left(deadline)?)?;
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        set_read(stream, left(deadline)?)?;
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for the answer",
                ));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Status line and body of a `Connection: close` answer (chunked bodies are decoded).
fn parse(raw: &[u8]) -> io::Result<Answer> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP answer: {what}"));
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let status_line = head.lines().next().ok_or_else(|| bad("empty"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase().starts_with("transfer-encoding:") && line.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = parse(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            plain,
            Answer {
                status: 503,
                body: "{}".into()
            }
        );
        let chunked =
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(chunked.body, "abcde");
        assert!(parse(b"garbage").is_err());
    }
}
