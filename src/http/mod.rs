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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::Loaded;
use crate::metrics::Metrics;
use crate::supervisor::snapshot::Snapshot;

/// DESIGN §5 bounds.
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
    #[error("[http] listen {addr}: {source}")]
    Http { addr: SocketAddr, source: io::Error },
    #[error("[control] socket {path}: another gsup is listening there")]
    ControlInUse { path: PathBuf },
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
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `[control] socket` with mode 0600. A socket file left by a crashed gsup (nobody
/// answers on it) is replaced; one a live gsup answers on is an error.
pub fn bind_control(path: &Path) -> Result<ControlSocket, BindError> {
    let failed = |source| BindError::Control {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::ControlInUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(failed)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(failed)?;
    // Created with the umask first; tighten before anyone can use it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    Ok(ControlSocket {
        listener,
        path: path.to_path_buf(),
    })
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
    tokio::spawn(async move {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => serve(stream, &limit, &api, Caller::Network),
                Err(error) => accept_failed(error).await,
            }
        }
    });
    Ok(())
}

/// Serves the control socket (same routes, no token).
pub fn spawn_control(socket: &ControlSocket, api: Arc<Api>) -> io::Result<()> {
    let listener = tokio::net::UnixListener::from_std(socket.listener.try_clone()?)?;
    tokio::spawn(async move {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => serve(stream, &limit, &api, Caller::ControlSocket),
                Err(error) => accept_failed(error).await,
            }
        }
    });
    Ok(())
}

/// EMFILE and friends: back off a moment instead of spinning on accept.
async fn accept_failed(error: io::Error) {
    warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn serve<S>(stream: S, limit: &Arc<Semaphore>, api: &Arc<Api>, caller: Caller)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Beyond the cap a new connection is closed at once (DESIGN §5).
    let Ok(permit) = Arc::clone(limit).try_acquire_owned() else {
        debug!("connection limit reached: closing a new connection");
        return;
    };
    let api = Arc::clone(api);
    tokio::spawn(async move {
        let service = service_fn(move |request| routes::handle(request, Arc::clone(&api), caller));
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
