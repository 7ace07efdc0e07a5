//! A small HTTP server that drains gracefully on SIGTERM — the kind of service gsup is
//! built for, used by gsup's tests, benchmarks and README.
//!
//! - Listens on `$LISTEN_ADDR` (default `127.0.0.1:8080`), or takes fd 3 when started by a
//!   socket-activating supervisor (`LISTEN_FDS=1` and `LISTEN_PID` = its own pid).
//! - Answers every request with `200 ok <pid>`; `GET /slow?ms=N` (or `$RESPONSE_DELAY_MS`)
//!   waits N ms first, to have requests in flight.
//! - Sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify) once it accepts, so a supervisor can
//!   tell this process's readiness from another's on the same shared socket.
//!   `$STARTUP_DELAY_MS` waits that long first (a slow start: loading, warming caches).
//! - On SIGTERM (or SIGINT): stops accepting, finishes the requests in flight, closes idle
//!   keep-alive connections, exits 0. `$DIE_ON_TERM=1` makes it die at once instead, as
//!   many servers do. The blocked `accept()` is woken by a signal to its thread, not by a
//!   connection to its own address: on a socket shared with another generation (a
//!   reload), the other one may accept that connection and this one would never stop.
//!
//! Standard library and nix only; one thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

fn main() {
    let delay_ms: u64 = std::env::var("RESPONSE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let die_on_term = std::env::var("DIE_ON_TERM").is_ok_and(|v| v == "1");
    let startup_delay_ms: u64 = std::env::var("STARTUP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);

    // Block TERM and INT before any thread exists, then wait for them on one thread.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    if !die_on_term {
        if let Err(error) = stop_signals.thread_block() {
            eprintln!("drain_server: cannot block signals: {error}");
            std::process::exit(1);
        }
    }

    let listener = match inherited_listener() {
        Some(listener) => listener,
        None => {
            let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
            match TcpListener::bind(&addr) {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("drain_server: cannot listen on {addr}: {error}");
                    std::process::exit(1);
                }
            }
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    if startup_delay_ms > 0 {
        // Connections meanwhile wait in the kernel's backlog (or go to another process
        // sharing the socket).
        thread::sleep(Duration::from_millis(startup_delay_ms));
    }
    println!("drain_server: listening on {local} (pid {})", std::process::id());
    notify_ready();

    let draining = Arc::new(AtomicBool::new(false));
    let accepting = Arc::new(AtomicBool::new(true));
    let open = Arc::new(AtomicUsize::new(0));
    if !die_on_term {
        let (draining, accepting) = (Arc::clone(&draining), Arc::clone(&accepting));
        let acceptor = interruptible_accepts();
        thread::spawn(move || {
            only_the_accept_loop_takes_sigusr1();
            if let Ok(signal) = stop_signals.wait() {
                println!("drain_server: got {signal:?}: draining");
                draining.store(true, Ordering::SeqCst);
                // Interrupt the blocked accept() until the loop has seen the flag. (A
                // connection to our own address would not do: on a socket shared with
                // another generation, that one may accept it.) Repeated, since a wake-up
                // sent just before the loop re-enters accept() would be lost. Bounded.
                for _ in 0..500 {
                    if !accepting.load(Ordering::SeqCst) {
                        break;
                    }
                    acceptor.interrupt();
                    thread::sleep(Duration::from_millis(10));
                }
            }
        });
    }

    while !draining.load(Ordering::SeqCst) {
        // A connection accepted is served, even the one accepted as the drain began: on a
        // socket shared with another generation, dropping it would reset a client.
        if let Some(stream) = accept(&listener) {
            open.fetch_add(1, Ordering::SeqCst);
            let (draining, open) = (Arc::clone(&draining), Arc::clone(&open));
            thread::spawn(move || {
                only_the_accept_loop_takes_sigusr1();
                serve(stream, delay_ms, &draining);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
    accepting.store(false, Ordering::SeqCst);
    drop(listener);
    // Let every connection finish its request (bounded: gsup's deadline is the real bound).
    for _ in 0..3000 {
        if open.load(Ordering::SeqCst) == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    println!("drain_server: drained, exiting");
}

/// The calling thread (the accept loop), and a way to make its blocked `accept()` return
/// `EINTR`: SIGUSR1 with a handler that does nothing, installed without `SA_RESTART`.
struct Acceptor(libc::pthread_t);

#[allow(unsafe_code)]
fn interruptible_accepts() -> Acceptor {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, sigaction};
    extern "C" fn wake(_: libc::c_int) {}
    let action = SigAction::new(SigHandler::Handler(wake), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler does nothing, so it is async-signal-safe; installed before any
    // thread but this one exists.
    if let Err(error) = unsafe { sigaction(Signal::SIGUSR1, &action) } {
        eprintln!("drain_server: cannot install the SIGUSR1 handler: {error}");
    }
    // SAFETY: pthread_self has no preconditions.
    Acceptor(unsafe { libc::pthread_self() })
}

/// One `accept4`, or `None` when it failed or was interrupted (std's `accept` retries
/// `EINTR`, so it could not be woken).
#[allow(unsafe_code)]
fn accept(listener: &TcpListener) -> Option<TcpStream> {
    use std::os::fd::AsRawFd;
    let fd = match nix::sys::socket::accept4(listener.as_raw_fd(), nix::sys::socket::SockFlag::SOCK_CLOEXEC) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::EINTR) => return None,
        Err(error) => {
            // Out of fds, a connection reset in the queue…: do not spin on it.
            eprintln!("drain_server: accept: {error}");
            thread::sleep(Duration::from_millis(10));
            return None;
        }
    };
    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
    Some(unsafe { TcpStream::from_raw_fd(fd) })
}

/// Blocks SIGUSR1 in the calling thread, so that only the accept loop is interrupted by it
/// (a SIGUSR1 a supervisor forwards must not cut a connection's read short).
fn only_the_accept_loop_takes_sigusr1() {
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    let _ = usr1.thread_block();
}

impl Acceptor {
    #[allow(unsafe_code)]
    fn interrupt(&self) {
        // SAFETY: the accept loop's thread is the main thread, alive until the process
        // exits; a signal to it runs the no-op handler.
        unsafe {
            libc::pthread_kill(self.0, libc::SIGUSR1);
        }
    }
}

/// `READY=1` on `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), if set.
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &addr));
    if let Err(error) = sent {
        eprintln!("drain_server: cannot send READY=1 to {target}: {error}");
    }
}

/// fd 3 when a supervisor handed over a listening socket (`LISTEN_FDS`/`LISTEN_PID`).
fn inherited_listener() -> Option<TcpListener> {
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    if fds < 1 || pid != std::process::id() {
        return None;
    }
    // SAFETY: with LISTEN_PID naming this process, fd 3 is a listening socket handed over
    // for it alone (sd_listen_fds(3)); nothing else in this program owns it.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    Some(listener)
}

/// Serves one connection's requests; once draining, an idle keep-alive connection closes
/// (a new one still gets its first request answered, waited for up to a second).
fn serve(stream: TcpStream, default_delay_ms: u64, draining: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    let (mut served, mut idle_while_draining) = (0u64, 0u32);
    loop {
        // Between requests: an idle keep-alive connection closes once draining.
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if draining.load(Ordering::SeqCst) {
                    idle_while_draining += 1;
                    if served > 0 || idle_while_draining >= 5 {
                        return;
                    }
                }
                continue;
            }
            Err(_) => return,
        }
        served += 1;
        let mut close = request_line.contains("HTTP/1.0");
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) => break,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {
                    if header.to_ascii_lowercase().starts_with("connection: close") {
                        close = true;
                    }
                }
                Err(_) => break,
            }
        }
        let delay = request_line
            .split_whitespace()
            .nth(1)
            .and_then(|path| path.split_once("ms=").map(|(_, ms)| ms.to_string()))
            .and_then(|ms| ms.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .unwrap_or(default_delay_ms);
        if delay > 0 {
            thread::sleep(Duration::from_millis(delay));
        }
        let close = close || draining.load(Ordering::SeqCst);
        let body = format!("ok {}\n", std::process::id());
        let connection = if close { "close" } else { "keep-alive" };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        );
        let written = writer.write_all(answer.as_bytes());
        if written.is_err() || close {
            return;
        }
    }
}
