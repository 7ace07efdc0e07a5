//! sd_notify in both directions (DESIGN §9, DEPS §12).
//!
//! - [`NotifyServer`]: the datagram socket one generation of the child gets as
//!   `NOTIFY_SOCKET`. It reads `KEY=VALUE` datagrams with the sender's `SCM_CREDENTIALS`
//!   pid and closes every file descriptor that comes with them. It gives the pid, never a
//!   verdict: the supervisor decides whether the sender belongs to the child's tree.
//! - [`SystemdNotifier`]: gsup's own client for the service manager that started it, which
//!   reaches abstract (`@…`) sockets too (the `sd-notify` crate does not, DEPS §12).
//! - [`child_env`]: what the child's environment gets for a server.
//!
//! Nothing here spawns, signals or waits: this module only moves datagrams.

use std::collections::HashMap;
use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram as StdUnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, UnixCredentials, sockopt};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// Largest datagram the server reads. sd_notify messages are small (systemd itself reads
/// at most `NOTIFY_BUFFER_MAX`, a page plus a byte); a longer one is truncated by the
/// kernel, so it is dropped whole rather than parsed in part.
const RECV_BUFFER: usize = 8 * 1024;

/// The kernel's `SCM_MAX_FD`: the most descriptors one message can carry. The control
/// buffer has room for all of them, so it is never truncated: with `MSG_CTRUNC` the fds
/// that fit are already ours but nix refuses to decode them, and they would leak.
const SCM_MAX_FD: usize = 253;

/// Mode of the server's directory: others may reach the socket inside, not list or
/// change the directory.
const DIR_MODE: u32 = 0o711;

/// Mode of the socket file: every process of the child's tree may send, whatever its uid
/// (senders are told apart by their credentials, not by permissions; DESIGN §9).
const SOCKET_MODE: u32 = 0o666;

/// One datagram as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The pid from the sender's `SCM_CREDENTIALS` (the kernel fills in the real sender's
    /// unless a privileged sender named another, as `systemd-notify` may with its parent).
    /// `None` only if the kernel sent no credentials, which `SO_PASSCRED` rules out.
    pub sender_pid: Option<i32>,
    /// The `KEY=VALUE` lines, in order; lines without `=` or with an empty key are left out.
    pub fields: Vec<(String, String)>,
}

/// What a field means (sd_notify(3)). Values that do not parse stay [`NotifyMessage::Other`],
/// so the caller can still log them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyMessage {
    /// `READY=1`
    Ready,
    /// `RELOADING=1`
    Reloading,
    /// `STOPPING=1`
    Stopping,
    /// `STATUS=…`
    Status(String),
    /// `MAINPID=…`
    MainPid(i32),
    /// `WATCHDOG=1`
    Watchdog,
    /// `WATCHDOG=trigger`: the child asks to be treated as if it missed its watchdog.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=…`: the child changes its watchdog period.
    WatchdogUsec(u64),
    /// `EXTEND_TIMEOUT_USEC=…`
    ExtendTimeoutUsec(u64),
    /// `ERRNO=…`
    Errno(i32),
    /// `BARRIER=1` (its pipe is already closed when this is seen).
    Barrier,
    /// Anything else, `MONOTONIC_USEC` and `FDSTORE` included.
    Other(String, String),
}

/// Reads the meaning of each field; unknown keys and unparsable values become `Other`.
pub fn parse(fields: &[(String, String)]) -> Vec<NotifyMessage> {
    fields.iter().map(|(key, value)| parse_field(key, value)).collect()
}

fn parse_field(key: &str, value: &str) -> NotifyMessage {
    let parsed = match (key, value) {
        ("READY", "1") => Some(NotifyMessage::Ready),
        ("RELOADING", "1") => Some(NotifyMessage::Reloading),
        ("STOPPING", "1") => Some(NotifyMessage::Stopping),
        ("STATUS", status) => Some(NotifyMessage::Status(status.to_owned())),
        ("MAINPID", pid) => pid.parse().ok().filter(|&pid| pid > 0).map(NotifyMessage::MainPid),
        ("WATCHDOG", "1") => Some(NotifyMessage::Watchdog),
        ("WATCHDOG", "trigger") => Some(NotifyMessage::WatchdogTrigger),
        ("WATCHDOG_USEC", usec) => usec.parse().ok().map(NotifyMessage::WatchdogUsec),
        ("EXTEND_TIMEOUT_USEC", usec) => usec.parse().ok().map(NotifyMessage::ExtendTimeoutUsec),
        ("ERRNO", errno) => errno.parse().ok().map(NotifyMessage::Errno),
        ("BARRIER", "1") => Some(NotifyMessage::Barrier),
        _ => None,
    };
    parsed.unwrap_or_else(|| NotifyMessage::Other(key.to_owned(), value.to_owned()))
}

/// The notify socket of one generation of the child. Dropping it removes the socket file
/// and its directory.
#[derive(Debug)]
pub struct NotifyServer {
    /// Bound, with `SO_PASSCRED`, registered with the runtime that was current at `bind`.
    socket: UnixDatagram,
    /// The private directory holding the socket (`<dir>/gsup-notify-<pid>-<generation>`).
    dir: PathBuf,
    /// `<dir>/notify.sock`; always UTF-8 (checked at bind), so it fits an env value.
    path: PathBuf,
    /// Senders the supervisor found outside the child's tree: dropped unread for a while.
    outsiders: Mutex<Outsiders>,
}

/// How long a sender found outside the child's tree stays dropped without a new look.
/// Only pid reuse could bring that pid into the tree, and that takes going round the
/// whole pid space first.
const OUTSIDER_MEMORY: Duration = Duration::from_secs(1);

/// The most outsiders remembered at once (a flood from more pids costs one look each).
const MAX_OUTSIDERS: usize = 1024;

/// Pids whose datagrams `recv` drops without handing them to the supervisor, so a flood
/// from outside the child's tree costs a `recvmsg` each, not a `/proc` walk (DESIGN §5).
#[derive(Debug, Default)]
struct Outsiders {
    until: HashMap<i32, Instant>,
}

impl Outsiders {
    fn remember(&mut self, pid: i32, now: Instant) {
        if self.until.len() >= MAX_OUTSIDERS {
            self.until.retain(|_, until| *until > now);
        }
        if self.until.len() < MAX_OUTSIDERS {
            self.until.insert(pid, now + OUTSIDER_MEMORY);
        }
    }

    fn known(&mut self, pid: i32, now: Instant) -> bool {
        match self.until.get(&pid) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.until.remove(&pid);
                false
            }
            None => false,
        }
    }
}

impl NotifyServer {
    /// Creates a private directory `<dir>/gsup-notify-XXXXXX` (an unpredictable name from
    /// `mkdtemp`, mode 0711) and binds `notify.sock` (mode 0666) in it. Must run inside a
    /// tokio runtime. `generation` only names the socket in errors.
    ///
    /// The name cannot be guessed, so another user cannot pre-create or plant it in a
    /// shared `/tmp` (DESIGN §9).
    pub fn bind(dir: &Path, generation: u64) -> io::Result<NotifyServer> {
        if dir.join("gsup-notify-XXXXXX/notify.sock").to_str().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "notify socket directory {} is not UTF-8: the path must fit NOTIFY_SOCKET",
                    dir.display()
                ),
            ));
        }
        let private = make_private_dir(dir)
            .map_err(|error| io::Error::new(error.kind(), format!("generation {generation}: {error}")))?;
        let path = private.join("notify.sock");
        // No server exists yet whose drop would clean up, so a failed bind does it here.
        let socket = bind_socket(&path).inspect_err(|_| {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_dir(&private);
        })?;
        Ok(NotifyServer {
            socket,
            dir: private,
            path,
            outsiders: Mutex::default(),
        })
    }

    /// What the child gets as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the directory to the child's `user`, as DESIGN §9 asks when one is set. The
    /// socket stays gsup's: its mode already lets anyone send.
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        std::os::unix::fs::chown(&self.dir, uid, gid).map_err(|error| with_path(error, "chown", &self.dir))
    }

    /// The supervisor found `pid` outside the child's tree: `recv` drops its datagrams
    /// without a look for `OUTSIDER_MEMORY`.
    pub fn ignore_sender(&self, pid: i32) {
        if let Ok(mut outsiders) = self.outsiders.lock() {
            outsiders.remember(pid, Instant::now());
        }
    }

    /// The next datagram that carries at least one field. Empty, truncated (larger than
    /// 8 KiB) and non-UTF-8 datagrams are skipped, and so are those of a sender given to
    /// `ignore_sender` (without being parsed). Every descriptor passed along is closed
    /// before this returns, whatever the datagram held.
    ///
    /// Cancel-safe: a datagram is either returned or not read at all.
    pub async fn recv(&self) -> io::Result<Notification> {
        let mut buffer = vec![0u8; RECV_BUFFER];
        let mut control = nix::cmsg_space!(UnixCredentials, [RawFd; SCM_MAX_FD]);
        loop {
            self.socket.readable().await?;
            let received = self.socket.try_io(Interest::READABLE, || {
                receive(self.socket.as_raw_fd(), &mut buffer, &mut control, |pid| {
                    self.outsiders
                        .lock()
                        .is_ok_and(|mut outsiders| outsiders.known(pid, Instant::now()))
                })
            });
            match received {
                Ok(Some(notification)) => return Ok(notification),
                Ok(None) => continue,
                // Readiness was stale (or a signal came in): wait for the next datagram.
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    continue;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for NotifyServer {
    fn drop(&mut self) {
        // Best effort: a leftover is harmless (the next gsup with this pid reuses or
        // replaces it) and drop has no one to report to.
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Creates a fresh directory with an unpredictable name in `parent` (mkdtemp(3): mode
/// 0700, never an existing path) and opens it to 0711 so the child's tree can reach the
/// socket inside.
fn make_private_dir(parent: &Path) -> io::Result<PathBuf> {
    let template = parent.join("gsup-notify-XXXXXX");
    let dir = nix::unistd::mkdtemp(&template).map_err(|errno| with_path(errno.into(), "mkdtemp", &template))?;
    if let Err(error) = fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE)) {
        let _ = fs::remove_dir(&dir);
        return Err(with_path(error, "chmod", &dir));
    }
    Ok(dir)
}

/// Checks before the first child starts that a notify socket's directory can be made in
/// `parent` (DESIGN §4: a path that cannot be written is exit 2, not a child without
/// `NOTIFY_SOCKET`).
pub fn check_runtime_dir(parent: &Path) -> io::Result<()> {
    let dir = make_private_dir(parent)?;
    fs::remove_dir(&dir).map_err(|error| with_path(error, "remove", &dir))
}

/// Where the child's notify sockets go (DESIGN §9): `$RUNTIME_DIRECTORY` (systemd's
/// `RuntimeDirectory=`, its first entry), else `$XDG_RUNTIME_DIR`, else `/run` as root,
/// else `$TMPDIR` or `/tmp`.
pub fn runtime_dir(env: &dyn Fn(&str) -> Option<String>, root: bool) -> PathBuf {
    let named = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dirs) = named("RUNTIME_DIRECTORY") {
        // systemd joins several `RuntimeDirectory=` entries with ':'.
        let first = dirs.split(':').next().unwrap_or(&dirs).to_string();
        return PathBuf::from(first);
    }
    if let Some(dir) = named("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir);
    }
    if root && Path::new("/run").is_dir() {
        return PathBuf::from("/run");
    }
    named("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// Binds the socket at `path` (replacing a stale one) with `SO_PASSCRED` and mode 0666.
fn bind_socket(path: &Path) -> io::Result<UnixDatagram> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(with_path(error, "remove stale socket", path)),
    }
    let socket = StdUnixDatagram::bind(path).map_err(|error| with_path(error, "bind", path))?;
    // Set before anyone learns the path, so no datagram arrives without credentials.
    socket::setsockopt(&socket, sockopt::PassCred, &true)
        .map_err(|errno| with_path(errno.into(), "setsockopt SO_PASSCRED", path))?;
    // bind(2) creates the file with 0777 minus the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|error| with_path(error, "chmod", path))?;
    socket
        .set_nonblocking(true)
        .map_err(|error| with_path(error, "set O_NONBLOCK", path))?;
    UnixDatagram::from_std(socket).map_err(|error| with_path(error, "register with the runtime", path))
}

/// Reads one datagram. `Ok(None)`: it was read and dropped (empty, truncated, garbled, or
/// from a sender `ignored` names).
fn receive(
    fd: RawFd,
    buffer: &mut [u8],
    control: &mut [u8],
    ignored: impl FnOnce(i32) -> bool,
) -> io::Result<Option<Notification>> {
    let mut iov = [IoSliceMut::new(buffer)];
    // CLOEXEC: a descriptor must not slip into a child spawned before it is closed.
    let message = socket::recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let (bytes, flags) = (message.bytes, message.flags);
    let mut sender_pid = None;
    match message.cmsgs() {
        Ok(cmsgs) => {
            for cmsg in cmsgs {
                match cmsg {
                    // FDSTORE=1 and BARRIER=1 pass descriptors; gsup keeps none, and
                    // `systemd-notify` waits until its barrier pipe is closed.
                    ControlMessageOwned::ScmRights(fds) => fds.into_iter().for_each(close_received),
                    ControlMessageOwned::ScmCredentials(credentials) => sender_pid = Some(credentials.pid()),
                    _ => {}
                }
            }
        }
        // Cannot happen with a control buffer sized for SCM_MAX_FD; if it did, the fds
        // that fit could not be decoded (and would stay open).
        Err(errno) => tracing::warn!(%errno, "notify datagram with truncated control data; its descriptors may leak"),
    }
    if sender_pid.is_some_and(ignored) {
        return Ok(None);
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        tracing::debug!(?sender_pid, "notify datagram larger than {RECV_BUFFER} bytes dropped");
        return Ok(None);
    }
    let Some(fields) = parse_datagram(&buffer[..bytes]) else {
        tracing::debug!(?sender_pid, "notify datagram that is not UTF-8 dropped");
        return Ok(None);
    };
    if fields.is_empty() {
        tracing::debug!(?sender_pid, "notify datagram without KEY=VALUE fields dropped");
        return Ok(None);
    }
    Ok(Some(Notification { sender_pid, fields }))
}

/// Closes a descriptor that arrived with a datagram. `nix::unistd::close` rather than
/// `OwnedFd::from_raw_fd`, which would need `unsafe`: the number was installed in our
/// table by this very `recvmsg`, so nothing else owns it.
fn close_received(fd: RawFd) {
    if let Err(errno) = nix::unistd::close(fd) {
        tracing::debug!(fd, %errno, "closing a descriptor passed with a notify datagram failed");
    }
}

/// The fields of a datagram's bytes; `None` when they are not UTF-8.
fn parse_datagram(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    std::str::from_utf8(bytes).ok().map(parse_fields)
}

/// Newline-separated `KEY=VALUE` (sd_notify(3)); a trailing newline, empty lines and lines
/// without a key are ignored, as systemd does.
fn parse_fields(text: &str) -> Vec<(String, String)> {
    text.split('\n')
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Adds what was done and to which path to an OS error (STYLE: errors name the file).
fn with_path(error: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{action} {}: {error}", path.display()))
}

/// The child's environment for `server`: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` with a
/// watchdog. `WATCHDOG_PID` is not here: the child's pid is only known after fork, so the
/// exec shim (DESIGN §8) sets it to its own pid just before exec.
pub fn child_env(server: &NotifyServer, watchdog: Option<Duration>) -> Vec<(String, String)> {
    let mut env = vec![("NOTIFY_SOCKET".to_owned(), server.path().to_string_lossy().into_owned())];
    if let Some(watchdog) = watchdog.filter(|watchdog| !watchdog.is_zero()) {
        env.push(("WATCHDOG_USEC".to_owned(), watchdog.as_micros().to_string()));
    }
    env
}

/// gsup's client for the service manager that started it (`NOTIFY_SOCKET` in gsup's own
/// environment).
#[derive(Debug)]
pub struct SystemdNotifier {
    /// Unbound and non-blocking: a full receive queue fails a send instead of stalling
    /// the event loop.
    socket: StdUnixDatagram,
    /// From `NOTIFY_SOCKET`: a path, or an abstract name for `@…`.
    addr: SocketAddr,
    /// Half of `WATCHDOG_USEC`, when the watchdog is meant for gsup.
    watchdog_interval: Option<Duration>,
}

impl SystemdNotifier {
    /// The notifier for `NOTIFY_SOCKET` as `env` reports it, or `None` when it is unset,
    /// empty or unusable (logged). `own_pid` is gsup's pid, to check `WATCHDOG_PID`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>, own_pid: i32) -> Option<SystemdNotifier> {
        let value = env("NOTIFY_SOCKET").filter(|value| !value.is_empty())?;
        let addr = match notify_addr(&value) {
            Ok(addr) => addr,
            Err(error) => {
                tracing::warn!(NOTIFY_SOCKET = %value, %error, "not notifying the service manager");
                return None;
            }
        };
        let socket = match StdUnixDatagram::unbound().and_then(|socket| {
            socket.set_nonblocking(true)?;
            Ok(socket)
        }) {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(NOTIFY_SOCKET = %value, %error, "not notifying the service manager");
                return None;
            }
        };
        let watchdog_interval = watchdog_interval(env, own_pid);
        Some(SystemdNotifier {
            socket,
            addr,
            watchdog_interval,
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE`) in one datagram, without blocking.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr).map(drop)
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    /// advises, when it is set and `WATCHDOG_PID` is unset or gsup's.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// `STATUS=…`; a newline in `status` would start a new field, so it becomes a space.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", status.replace('\n', " ")))
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`: systemd ≥ 253 (`Type=notify-reload`) uses the
    /// timestamp to tell this reload from an earlier one.
    pub fn reloading(&self) -> io::Result<()> {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
        let usec = Duration::from(now).as_micros();
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }
}

/// `@name` is abstract; otherwise an absolute path (libsystemd refuses anything else).
fn notify_addr(value: &str) -> io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        SocketAddr::from_abstract_name(name)
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "neither an absolute path nor @abstract",
        ))
    }
}

fn watchdog_interval(env: &dyn Fn(&str) -> Option<String>, own_pid: i32) -> Option<Duration> {
    let usec: u64 = env("WATCHDOG_USEC")?.parse().ok().filter(|&usec| usec > 0)?;
    if let Some(pid) = env("WATCHDOG_PID").filter(|pid| !pid.is_empty()) {
        // Meant for another process (or unreadable, which sd_watchdog_enabled refuses too).
        if pid.parse::<i32>().ok() != Some(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::IoSlice;
    use std::os::unix::fs::{FileTypeExt, symlink};

    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::sys::socket::{ControlMessage, UnixAddr};
    use tokio::time::timeout;

    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Long enough for a loaded CI machine; every wait below is bounded by it.
    const DEADLINE: Duration = Duration::from_secs(10);

    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        match timeout(DEADLINE, future).await {
            Ok(value) => value,
            Err(_) => panic!("{what}: nothing within {DEADLINE:?}"),
        }
    }

    async fn next(server: &NotifyServer) -> Notification {
        within("notify datagram", server.recv()).await.unwrap()
    }

    fn send_to(server: &NotifyServer, payload: &[u8]) {
        let sender = StdUnixDatagram::unbound().unwrap();
        sender.send_to(payload, server.path()).unwrap();
    }

    /// Sends `payload` with `fds` attached, as FDSTORE=1 or BARRIER=1 do.
    fn send_with_fds(server: &NotifyServer, payload: &[u8], fds: &[RawFd]) {
        let sender = StdUnixDatagram::unbound().unwrap();
        let addr = UnixAddr::new(server.path()).unwrap();
        let cmsgs = [ControlMessage::ScmRights(fds)];
        socket::sendmsg(
            sender.as_raw_fd(),
            &[IoSlice::new(payload)],
            &cmsgs,
            MsgFlags::empty(),
            Some(&addr),
        )
        .unwrap();
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn own_pid() -> i32 {
        std::process::id() as i32
    }

    /// A pipe whose read end does not block: `read` tells "writer still open" (EAGAIN)
    /// from "every writer closed" (0, EOF) at once.
    fn pipe() -> (fs::File, std::os::fd::OwnedFd) {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
        (fs::File::from(read), write)
    }

    fn read_end_state(read: &fs::File) -> Result<usize, Errno> {
        nix::unistd::read(read, &mut [0u8; 16])
    }

    #[tokio::test]
    async fn fields_arrive_parsed_with_the_senders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let server = NotifyServer::bind(dir.path(), 1).unwrap();
        send_to(&server, b"READY=1\nSTATUS=up and running\nX_CUSTOM=a=b\n");
        let notification = next(&server).await;
        // The kernel fills in the sender's credentials for us (SO_PASSCRED).
        assert_eq!(notification.sender_pid, Some(own_pid()));
        assert_eq!(
            notification.fields,
            fields(&[("READY", "1"), ("STATUS", "up and running"), ("X_CUSTOM", "a=b")])
        );
        assert_eq!(
            parse(&notification.fields),
            vec![
                NotifyMessage::Ready,
                NotifyMessage::Status("up and running".into()),
                NotifyMessage::Other("X_CUSTOM".into(), "a=b".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_passed_descriptor_is_closed_by_recv() {
        let dir = tempfile::tempdir().unwrap();
        let server = NotifyServer::bind(dir.path(), 1).unwrap();
        let (read, write) = pipe();
        send_with_fds(&server, b"FDSTORE=1", &[write.as_raw_fd()]);
        drop(write);
        // Negative control: the datagram in the queue still holds the write end, so a
        // read end seeing EOF below proves recv closed it, not our drop.
        assert_eq!(read_end_state(&read), Err(Errno::EAGAIN));
        let notification = next(&server).await;
        assert_eq!(notification.fields, fields(&[("FDSTORE", "1")]));
        assert_eq!(
            read_end_state(&read),
            Ok(0),
            "the server kept the passed descriptor open"
        );
    }

    #[tokio::test]
    async fn empty_oversized_and_garbled_datagrams_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let server = NotifyServer::bind(dir.path(), 1).unwrap();
        let (read, write) = pipe();
        send_to(&server, b"");
        send_to(&server, b"\xff\xfeREADY=1");
        send_to(&server, b"no equals sign\n=no key\n\n");
        let mut oversized = b"STATUS=".to_vec();
        oversized.resize(RECV_BUFFER + 1024, b'x');
        // A skipped datagram's descriptors are closed too.
        send_with_fds(&server, &oversized, &[write.as_raw_fd()]);
        drop(write);
        send_to(&server, b"STOPPING=1");
        let notification = next(&server).await;
        assert_eq!(notification.fields, fields(&[("STOPPING", "1")]));
        assert_eq!(
            read_end_state(&read),
            Ok(0),
            "the oversized datagram's descriptor stayed open"
        );
    }

    /// Interop with the real client. `systemd-notify` (≥ 246) ends with `BARRIER=1` and a
    /// pipe, and waits until gsup closes it: exit 0 proves the close.
    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // the test waits on its own helper process
    async fn systemd_notify_is_understood_and_released() {
        let program = Path::new("/usr/bin/systemd-notify");
        if !program.exists() {
            eprintln!("SKIPPED: {} is not installed", program.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = NotifyServer::bind(dir.path(), 1).unwrap();
        let mut child = std::process::Command::new(program)
            .args(["--ready", "--status=hello"])
            .env("NOTIFY_SOCKET", server.path())
            .spawn()
            .unwrap();
        let child_pid = child.id() as i32;
        let mut exited = std::pin::pin!(timeout(DEADLINE, tokio::task::spawn_blocking(move || child.wait())));
        let mut received = Vec::new();
        let status = loop {
            tokio::select! {
                // Keep reading while it runs: it blocks on its barrier until we do.
                notification = server.recv() => received.push(notification.unwrap()),
                exited = &mut exited => match exited {
                    Ok(status) => break status.unwrap().unwrap(),
                    Err(_) => {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), nix::sys::signal::SIGKILL);
                        panic!("systemd-notify still runs after {DEADLINE:?}: its barrier pipe was not closed");
                    }
                },
            }
        };
        let seen = |received: &[Notification]| {
            let messages: Vec<_> = received.iter().flat_map(|n| parse(&n.fields)).collect();
            messages.contains(&NotifyMessage::Ready) && messages.contains(&NotifyMessage::Status("hello".into()))
        };
        // Without a barrier (older systemd) the fields may still be queued.
        while !seen(&received) {
            received.push(next(&server).await);
        }
        let senders: Vec<_> = received.iter().map(|n| n.sender_pid).collect();
        eprintln!(
            "systemd-notify (pid {child_pid}, parent {}) sent as {senders:?}: {received:?}",
            own_pid()
        );
        assert!(status.success(), "systemd-notify failed: {status}");
        assert!(
            senders
                .iter()
                .all(|&pid| pid == Some(child_pid) || pid == Some(own_pid()))
        );
    }

    #[tokio::test]
    async fn socket_file_and_dir_have_their_modes_and_go_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = NotifyServer::bind(dir.path(), 1).unwrap();
        let second = NotifyServer::bind(dir.path(), 2).unwrap();
        let (path, private) = (first.path().to_owned(), first.path().parent().unwrap().to_owned());
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode(&path), 0o666);
        assert_eq!(mode(&private), 0o711);
        assert_eq!(private.parent(), Some(dir.path()));
        // One socket per generation (DESIGN §8): an old child's READY=1 never reaches the new one.
        assert_ne!(first.path(), second.path());
        first.chown(Some(nix::unistd::geteuid().as_raw()), None).unwrap();
        drop(first);
        assert!(!path.exists() && !private.exists(), "socket or its dir left behind");
        assert!(
            second.path().exists(),
            "dropping one generation removed another's socket"
        );
    }

    #[tokio::test]
    async fn the_directory_name_is_unpredictable_so_nothing_planted_blocks_it() {
        let dir = tempfile::tempdir().unwrap();
        // What an attacker could plant under the old, predictable name.
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(
            elsewhere.path(),
            dir.path().join(format!("gsup-notify-{}-1", own_pid())),
        )
        .unwrap();
        fs::create_dir(dir.path().join(format!("gsup-notify-{}-2", own_pid()))).unwrap();
        let first = NotifyServer::bind(dir.path(), 1).unwrap();
        let second = NotifyServer::bind(dir.path(), 2).unwrap();
        send_to(&first, b"READY=1");
        assert_eq!(next(&first).await.fields, fields(&[("READY", "1")]));
        for server in [&first, &second] {
            let private = server.path().parent().unwrap();
            let name = private.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with("gsup-notify-") && !name.contains(&own_pid().to_string()),
                "{name}"
            );
            assert!(fs::symlink_metadata(private).unwrap().is_dir());
            assert_eq!(
                fs::symlink_metadata(private).unwrap().uid(),
                nix::unistd::geteuid().as_raw()
            );
        }
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);

        let error = NotifyServer::bind(&dir.path().join("missing"), 5).unwrap_err();
        assert!(
            error.to_string().contains("missing"),
            "the error names the path: {error}"
        );
    }

    #[test]
    fn the_runtime_dir_follows_systemd_then_xdg_then_run_or_tmp() {
        let pick = |pairs: &[(&str, &str)], root| runtime_dir(&env_of(pairs), root);
        assert_eq!(
            pick(
                &[
                    ("RUNTIME_DIRECTORY", "/run/app:/run/other"),
                    ("XDG_RUNTIME_DIR", "/run/user/1")
                ],
                false
            ),
            PathBuf::from("/run/app")
        );
        assert_eq!(
            pick(&[("XDG_RUNTIME_DIR", "/run/user/1"), ("TMPDIR", "/t")], true),
            PathBuf::from("/run/user/1")
        );
        if Path::new("/run").is_dir() {
            assert_eq!(pick(&[("TMPDIR", "/t")], true), PathBuf::from("/run"));
        }
        assert_eq!(pick(&[("TMPDIR", "/t")], false), PathBuf::from("/t"));
        assert_eq!(pick(&[("RUNTIME_DIRECTORY", "")], false), PathBuf::from("/tmp"));
    }

    #[tokio::test]
    async fn child_env_gives_the_socket_and_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let server = NotifyServer::bind(dir.path(), 1).unwrap();
        let socket = server.path().to_str().unwrap().to_owned();
        assert_eq!(
            child_env(&server, None),
            vec![("NOTIFY_SOCKET".to_owned(), socket.clone())]
        );
        assert_eq!(
            child_env(&server, Some(Duration::ZERO)),
            vec![("NOTIFY_SOCKET".to_owned(), socket.clone())]
        );
        assert_eq!(
            child_env(&server, Some(Duration::from_millis(1500))),
            vec![
                ("NOTIFY_SOCKET".to_owned(), socket),
                ("WATCHDOG_USEC".to_owned(), "1500000".to_owned())
            ]
        );
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    async fn recv_text(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 4096];
        let len = within("datagram from the notifier", socket.recv(&mut buffer))
            .await
            .unwrap();
        String::from_utf8(buffer[..len].to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_notifier_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("systemd.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = SystemdNotifier::from_env(&env_of(&[("NOTIFY_SOCKET", path.to_str().unwrap())]), own_pid())
            .expect("a notifier for NOTIFY_SOCKET");
        notifier.ready().unwrap();
        notifier.stopping().unwrap();
        notifier.status("x").unwrap();
        notifier.status("two\nlines").unwrap();
        notifier.watchdog().unwrap();
        notifier.reloading().unwrap();
        assert_eq!(recv_text(&systemd).await, "READY=1");
        assert_eq!(recv_text(&systemd).await, "STOPPING=1");
        assert_eq!(recv_text(&systemd).await, "STATUS=x");
        assert_eq!(recv_text(&systemd).await, "STATUS=two lines");
        assert_eq!(recv_text(&systemd).await, "WATCHDOG=1");
        let reloading = recv_text(&systemd).await;
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .expect(&reloading);
        assert!(usec.parse::<u64>().unwrap() > 0, "{reloading}");
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[tokio::test]
    async fn the_notifier_reaches_an_abstract_socket() {
        let name = format!("gsup-test-{}", own_pid());
        let systemd = StdUnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        systemd.set_nonblocking(true).unwrap();
        let systemd = UnixDatagram::from_std(systemd).unwrap();
        let notifier =
            SystemdNotifier::from_env(&env_of(&[("NOTIFY_SOCKET", &format!("@{name}"))]), own_pid()).unwrap();
        notifier.ready().unwrap();
        assert_eq!(recv_text(&systemd).await, "READY=1");
    }

    #[test]
    fn the_watchdog_is_half_its_period_and_only_for_us() {
        let notifier = |pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            pairs.push(("NOTIFY_SOCKET", "/nonexistent/notify.sock"));
            SystemdNotifier::from_env(&env_of(&pairs), 4242)
                .unwrap()
                .watchdog_interval()
        };
        assert_eq!(notifier(&[("WATCHDOG_USEC", "2000000")]), Some(Duration::from_secs(1)));
        assert_eq!(
            notifier(&[("WATCHDOG_USEC", "2000000"), ("WATCHDOG_PID", "4242")]),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            notifier(&[("WATCHDOG_USEC", "2000000"), ("WATCHDOG_PID", "4243")]),
            None
        );
        assert_eq!(
            notifier(&[("WATCHDOG_USEC", "2000000"), ("WATCHDOG_PID", "nope")]),
            None
        );
        assert_eq!(notifier(&[("WATCHDOG_USEC", "0")]), None);
        assert_eq!(notifier(&[("WATCHDOG_USEC", "soon")]), None);
        assert_eq!(notifier(&[]), None);
    }

    #[test]
    fn no_notifier_without_a_usable_notify_socket() {
        assert!(SystemdNotifier::from_env(&env_of(&[]), 1).is_none());
        assert!(SystemdNotifier::from_env(&env_of(&[("NOTIFY_SOCKET", "")]), 1).is_none());
        assert!(SystemdNotifier::from_env(&env_of(&[("NOTIFY_SOCKET", "relative.sock")]), 1).is_none());
        assert!(SystemdNotifier::from_env(&env_of(&[("NOTIFY_SOCKET", "vsock:2:1234")]), 1).is_none());
        // A send to a socket no one bound fails instead of blocking or panicking.
        let notifier = SystemdNotifier::from_env(&env_of(&[("NOTIFY_SOCKET", "/nonexistent/notify.sock")]), 1).unwrap();
        assert!(notifier.ready().is_err());
    }

    #[test]
    fn outsiders_are_remembered_for_a_while_and_bounded() {
        let now = Instant::now();
        let mut outsiders = Outsiders::default();
        assert!(!outsiders.known(7, now));
        outsiders.remember(7, now);
        assert!(outsiders.known(7, now + OUTSIDER_MEMORY / 2));
        assert!(!outsiders.known(8, now));
        assert!(!outsiders.known(7, now + OUTSIDER_MEMORY), "a verdict expires");
        for pid in 0..2 * MAX_OUTSIDERS as i32 {
            outsiders.remember(pid, now);
        }
        assert_eq!(outsiders.until.len(), MAX_OUTSIDERS);
        // Expired ones make room.
        outsiders.remember(-1, now + OUTSIDER_MEMORY);
        assert!(outsiders.known(-1, now + OUTSIDER_MEMORY));
        assert_eq!(outsiders.until.len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any bytes: no panic; UTF-8 gives fields with a key and no newline, anything
        /// else nothing; and every field has a meaning (`parse` never panics either).
        #[test]
        fn any_datagram_parses_or_is_refused(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u8::ANY,
                    proptest::sample::select(b"=\nREADY1WATCHDOG_USECMAINPID-0".to_vec()),
                ],
                0..300,
            ),
        ) {
            match parse_datagram(&bytes) {
                Some(fields) => {
                    proptest::prop_assert!(std::str::from_utf8(&bytes).is_ok());
                    for (key, value) in &fields {
                        proptest::prop_assert!(!key.is_empty() && !key.contains(['\n', '=']));
                        proptest::prop_assert!(!value.contains('\n'));
                    }
                    proptest::prop_assert_eq!(parse(&fields).len(), fields.len());
                }
                None => proptest::prop_assert!(std::str::from_utf8(&bytes).is_err()),
            }
        }

        #[test]
        fn any_field_gets_a_meaning(key in "\\PC{0,12}", value in "\\PC{0,24}") {
            let _ = parse(&[(key, value)]);
        }
    }

    #[test]
    fn parse_knows_the_sd_notify_fields() {
        let parsed = parse(&fields(&[
            ("READY", "1"),
            ("RELOADING", "1"),
            ("STOPPING", "1"),
            ("STATUS", ""),
            ("MAINPID", "123"),
            ("MAINPID", "0"),
            ("WATCHDOG", "1"),
            ("WATCHDOG", "trigger"),
            ("WATCHDOG_USEC", "5000000"),
            ("EXTEND_TIMEOUT_USEC", "10"),
            ("ERRNO", "2"),
            ("BARRIER", "1"),
            ("READY", "0"),
            ("MONOTONIC_USEC", "77"),
        ]));
        assert_eq!(
            parsed,
            vec![
                NotifyMessage::Ready,
                NotifyMessage::Reloading,
                NotifyMessage::Stopping,
                NotifyMessage::Status(String::new()),
                NotifyMessage::MainPid(123),
                NotifyMessage::Other("MAINPID".into(), "0".into()),
                NotifyMessage::Watchdog,
                NotifyMessage::WatchdogTrigger,
                NotifyMessage::WatchdogUsec(5_000_000),
                NotifyMessage::ExtendTimeoutUsec(10),
                NotifyMessage::Errno(2),
                NotifyMessage::Barrier,
                NotifyMessage::Other("READY".into(), "0".into()),
                NotifyMessage::Other("MONOTONIC_USEC".into(), "77".into()),
            ]
        );
    }
}
