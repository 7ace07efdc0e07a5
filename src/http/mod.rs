//! gsup's own HTTP port and its local control socket (DESIGN §5).
//!
//! The HTTP side never touches the child: it reads the supervisor's published `Snapshot`
//! and sends `Control` requests to the event loop, which owns the child. Every connection
//! is bounded (a cap on connections, a header-read timeout, head and body sizes), so slow
//! or malformed clients cannot stall `/alive` or a SIGTERM; a panic in a handler ends
//! only its own connection's task.

pub mod client;
pub mod overview;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::stat::{Mode, umask};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::Loaded;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// DESIGN §5 bounds. Connections: at most this many, fewer with a low fd limit
/// (`connection_limit`).
pub const MAX_CONNECTIONS: usize = 1024;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request from the HTTP side (or the control socket) to the event loop. The loop
/// answers on `reply` once it has acted, so the HTTP answer says what really happened.
#[derive(Debug)]
pub enum Control {
    /// Graceful shutdown; the reply says whether this request started it.
    Shutdown {
        reason: String,
        reply: oneshot::Sender<bool>,
    },
    /// Forced shutdown.
    Kill { reason: String, reply: oneshot::Sender<()> },
    /// Readiness off until exit; the reply is when the preStop began (the first one).
    Prestop { reply: oneshot::Sender<Instant> },
    /// A zero-downtime reload (DESIGN §8): the reply is its id, or why it was refused;
    /// `outcome`, when given, gets the result once the reload has one.
    Reload {
        reply: oneshot::Sender<Result<u64, String>>,
        outcome: Option<oneshot::Sender<crate::supervisor::state::ReloadRecord>>,
    },
}

/// Everything a request handler may read. Cloned per connection as an `Arc`.
pub struct Api {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub control: mpsc::UnboundedSender<Control>,
    pub metrics: Arc<Metrics>,
    pub loaded: Arc<Loaded>,
}

#[derive(Debug, Error)]
pub enum BindError {
    #[error(
        "[http] listen {addr}: {source}{hint}",
        hint = if source.kind() == io::ErrorKind::AddrInUse {
            " (choose another port with `--http 127.0.0.1:PORT`, or turn the port off with `--http off`)"
        } else {
            ""
        }
    )]
    Http { addr: SocketAddr, source: io::Error },
    #[error("[control] socket {path}: another gsup is listening there")]
    ControlInUse { path: PathBuf },
    #[error("[control] socket {path}: a {kind} is there, not a socket; left alone (choose another path)")]
    ControlNotASocket { path: PathBuf, kind: &'static str },
    #[error("[control] socket {path}: {source}")]
    Control { path: PathBuf, source: io::Error },
}

/// Binds `[http] listen` before the child starts: a port in use is a start-up error.
pub fn bind_http(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| BindError::Http { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| BindError::Http { addr, source })?;
    Ok(listener)
}

/// The control socket's file; removed when dropped (gsup's exit).
pub struct ControlSocket {
    pub listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Only our own socket: had someone replaced it meanwhile, theirs stays.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|meta| meta.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `[control] socket`, created with mode 0600 from `bind` on (umask 0177 around
/// it: no window in which another user could connect). A stale socket (a crashed gsup's:
/// connecting is refused) is replaced; one a live gsup answers on is an error, and so is
/// anything that is not a socket (a regular file, a directory, a symlink), which is left
/// alone (DESIGN §9). Runs before the runtime and the child exist: gsup has one thread,
/// so the process-wide umask change touches nobody else's files.
pub fn bind_control(path: &Path) -> Result<ControlSocket, BindError> {
    let failed = |source| BindError::Control {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(BindError::ControlInUse {
                    path: path.to_path_buf(),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(failed)?;
            }
            Err(error) => return Err(failed(error)),
        },
        Ok(meta) => {
            let kind = if meta.file_type().is_symlink() {
                "symlink"
            } else if meta.is_dir() {
                "directory"
            } else if meta.is_file() {
                "regular file"
            } else {
                "special file"
            };
            return Err(BindError::ControlNotASocket {
                path: path.to_path_buf(),
                kind,
            });
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(failed)?;
    let socket = ControlSocket {
        listener,
        path: path.to_path_buf(),
    };
    socket.listener.set_nonblocking(true).map_err(failed)?;
    Ok(socket)
}

/// `SO_PEERCRED`: the control socket answers root and gsup's own uid only, whatever its
/// file's mode has become (DESIGN §9).
fn peer_allowed(stream: &tokio::net::UnixStream) -> bool {
    let own = nix::unistd::geteuid().as_raw();
    stream
        .peer_cred()
        .is_ok_and(|cred| cred.uid() == 0 || cred.uid() == own)
}

/// Answers owed to callers whose request ends gsup (POST/DELETE `/shutdown`): gsup waits
/// a moment for them at exit (`answers_written`), so `gsup ctl shutdown` during a restart
/// backoff, which ends gsup at once, still reads its 202.
static OWED: AtomicUsize = AtomicUsize::new(0);
static ANSWERED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// One connection's debt: marked by the handler, paid when the connection has ended (its
/// answer written and the connection closed): when the last `Arc` of it drops, with the
/// connection's task, whether it ended well, with an error or in a panic.
#[derive(Default)]
pub(crate) struct OwedAnswer(std::sync::atomic::AtomicBool);

impl OwedAnswer {
    pub(crate) fn mark(&self) {
        if !self.0.swap(true, Ordering::SeqCst) {
            OWED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for OwedAnswer {
    fn drop(&mut self) {
        if self.0.swap(false, Ordering::SeqCst) {
            OWED.fetch_sub(1, Ordering::SeqCst);
            ANSWERED.notify_waiters();
        }
    }
}

/// Waits, at most `patience`, until every answer owed to a caller that ended gsup is
/// written. Called by `supervisor::run` once the event loop has returned.
pub async fn answers_written(patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let answered = ANSWERED.notified();
        if OWED.load(Ordering::SeqCst) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, answered).await.is_err() {
            return;
        }
    }
}

/// Who is asking: the TCP port needs the bearer token for mutating endpoints; the control
/// socket is guarded by its file permissions and needs none (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Network,
    ControlSocket,
}

/// Serves the TCP port until the runtime shuts down (at gsup's exit, open connections are
/// dropped without waiting).
pub fn spawn_http(listener: std::net::TcpListener, api: Arc<Api>) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "http listening");
    }
    let limit = connection_limit();
    tokio::spawn(async move {
        let mut failures = AcceptFailures::default();
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => serve(stream, &limit, &api, Caller::Network),
                Err(error) => failures.pause(error, "http").await,
            }
        }
    });
    Ok(())
}

/// Serves the control socket (same routes, no token), to root and gsup's own uid only.
pub fn spawn_control(socket: &ControlSocket, api: Arc<Api>) -> io::Result<()> {
    let listener = tokio::net::UnixListener::from_std(socket.listener.try_clone()?)?;
    // Its own slots: the HTTP port's clients (anyone who reaches it) must never use up
    // the way root and gsup's uid have in (`gsup ctl prestop` is a preStop hook).
    let limit = Arc::new(Semaphore::new(MAX_CONTROL_CONNECTIONS));
    tokio::spawn(async move {
        let mut failures = AcceptFailures::default();
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) if peer_allowed(&stream) => serve(stream, &limit, &api, Caller::ControlSocket),
                Ok((_stream, _peer)) => debug!("control socket: a connection from another uid closed"),
                Err(error) => failures.pause(error, "control socket").await,
            }
        }
    });
    Ok(())
}

/// The control socket's own cap on open connections (only root and gsup's uid get one).
const MAX_CONTROL_CONNECTIONS: usize = 16;

/// The cap on open connections of the HTTP port (DESIGN §5): 1024,
/// or a quarter of the soft `RLIMIT_NOFILE` read when the first server starts (after gsup
/// raised it), so connections never take the descriptors a restart of the child needs.
fn connection_limit() -> Arc<Semaphore> {
    static LIMIT: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(LIMIT.get_or_init(|| Arc::new(Semaphore::new(max_connections(soft_nofile())))))
}

fn soft_nofile() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
}

/// A quarter of the fd limit, at most 1024 and at least 1 (an unknown or infinite limit:
/// 1024).
fn max_connections(soft_nofile: Option<u64>) -> usize {
    let quarter = soft_nofile.map_or(u64::MAX, |soft| soft / 4);
    usize::try_from(quarter.min(MAX_CONNECTIONS as u64))
        .unwrap_or(MAX_CONNECTIONS)
        .max(1)
}

/// How long accepting pauses after a failure (EMFILE and friends): the pending
/// connection stays queued, and spinning on it would burn a core.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning about failing accepts per this period; the rest are counted.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Accept failures, logged once per `ACCEPT_WARN_EVERY` with how many came since.
#[derive(Default)]
struct AcceptFailures {
    last_warned: Option<Instant>,
    unreported: u64,
}

impl AcceptFailures {
    async fn pause(&mut self, error: io::Error, what: &str) {
        let now = Instant::now();
        if self
            .last_warned
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_WARN_EVERY)
        {
            warn!(%error, server = what, more = self.unreported, "accept failed: pausing new connections a moment");
            self.last_warned = Some(now);
            self.unreported = 0;
        } else {
            self.unreported += 1;
        }
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }
}

fn serve<S>(stream: S, limit: &Arc<Semaphore>, api: &Arc<Api>, caller: Caller)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let api = Arc::clone(api);
    spawn_connection(stream, limit, move |owed| {
        service_fn(move |request| routes::handle(request, Arc::clone(&api), caller, Arc::clone(&owed)))
    });
}

/// One connection, in its own task, with the bounds of DESIGN §5; `service` gets the
/// connection's debt (`OwedAnswer`). A panic in a handler unwinds this task only (tokio
/// catches it), so it ends this connection alone, releasing its permit and its debt on
/// the way.
fn spawn_connection<S, F, Svc, Fut>(stream: S, limit: &Arc<Semaphore>, service: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(Arc<OwedAnswer>) -> Svc,
    Svc: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<Full<Bytes>>,
            Error = std::convert::Infallible,
            Future = Fut,
        > + Send
        + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<Full<Bytes>>, std::convert::Infallible>> + Send + 'static,
{
    // Beyond the cap a new connection is closed at once (DESIGN §5).
    let Ok(permit) = Arc::clone(limit).try_acquire_owned() else {
        debug!("connection limit reached: closing a new connection");
        return;
    };
    let service = service(Arc::new(OwedAnswer::default()));
    tokio::spawn(async move {
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_header_size(MAX_HEAD_BYTES)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        if let Err(error) = connection.await {
            debug!(%error, "connection ended with an error");
        }
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_quarter_of_the_fd_limit_at_most_1024() {
        assert_eq!(max_connections(Some(1024)), 256);
        assert_eq!(max_connections(Some(256)), 64);
        assert_eq!(max_connections(Some(524_288)), 1024);
        assert_eq!(max_connections(Some(3)), 1);
        assert_eq!(max_connections(None), 1024);
    }

    /// Over real loopback, with a cap of one connection: a handler that panics ends its
    /// connection (no answer) and frees its slot; the next connection is served.
    #[tokio::test]
    async fn a_panicking_handler_ends_only_its_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limit = Arc::new(Semaphore::new(1));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                spawn_connection(stream, &limit, |_owed| {
                    service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                        assert_ne!(request.uri().path(), "/panic", "a handler panics (test)");
                        Ok(hyper::Response::new(Full::new(Bytes::from_static(b"served"))))
                    })
                });
            }
        });
        let ask = |path: &'static str| {
            tokio::task::spawn_blocking(move || {
                use std::io::{Read, Write};
                let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                stream.write_all(request.as_bytes()).expect("send");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                answer
            })
        };
        let panicked = ask("/panic").await.expect("client");
        assert!(panicked.is_empty(), "a panicking handler answered: {panicked}");
        let served = ask("/ok").await.expect("client");
        assert!(served.ends_with("served"), "{served}");
    }
}
