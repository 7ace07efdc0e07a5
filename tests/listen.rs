//! DESIGN §8 socket hand-off: `[[listen]]` sockets bound by gsup, handed to every child as
//! fds 3.. with LISTEN_FDS, LISTEN_PID (the child's own pid, set by the exec shim) and
//! LISTEN_FDNAMES, and held open across restarts.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

fn get(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn the_child_gets_the_socket_on_fd_3_with_its_own_pid() {
    let (_reserved, addr) = reserved_addr();
    let script = format!("echo fds=$LISTEN_FDS names=$LISTEN_FDNAMES; exec {CHILD} pid listen 127.0.0.1:0 forever");
    let mut gsup = gsup_run(&["--listen", &format!("web={addr}"), "--", "sh", "-c", &script], &[]);
    assert_eq!(gsup.expect_line("fds="), "fds=1 names=web");
    let pid = field(&gsup.expect_line("pid "), "pid");
    assert_eq!(
        gsup.expect_line("listen-fds"),
        "listen-fds 1 pid-ok true",
        "LISTEN_PID is the child's own pid"
    );
    let answer = get(&addr);
    assert!(
        answer.contains(&format!("ok {pid}")),
        "the child serves gsup's socket: {answer}"
    );
    gsup.signal(libc::SIGTERM);
    gsup.wait_code(PATIENCE);
}

/// The socket stays open in gsup while no child runs: a client that connects and sends
/// its request during the restart backoff is queued by the kernel and answered by the
/// next generation (the first one never accepts).
#[test]
fn connections_queue_across_a_restart() {
    let (_reserved, addr) = reserved_addr();
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("first-ran");
    let marker = marker.to_str().expect("utf-8");
    // The first generation says `up` and exits 3 without accepting; the next one serves.
    let script = format!(
        "if [ -e {marker} ]; then exec {CHILD} pid listen 127.0.0.1:0 forever; \
         else : > {marker}; exec {CHILD} pid echo up exit 3; fi"
    );
    let file = config_file("[restart]\npolicy = \"always\"\nbackoff_initial = \"1s\"\n");
    let path = file.path().to_str().expect("utf-8");
    let mut gsup = gsup_run(
        &[
            "--config",
            path,
            "--listen",
            &format!("web={addr}"),
            "--",
            "sh",
            "-c",
            &script,
        ],
        &[],
    );
    let first = field(&gsup.expect_line("pid "), "pid");
    gsup.expect_line("up");
    assert!(
        wait_until(PATIENCE, || gsup.stderr().contains("child will be restarted")),
        "{}",
        gsup.stderr()
    );
    assert!(!alive(first), "no child runs during the backoff");
    // No child now; the connect still succeeds (gsup's socket, the kernel's backlog).
    let mut early = TcpStream::connect(&addr).expect("queued by the kernel while no child runs");
    early.set_read_timeout(Some(PATIENCE)).expect("timeout");
    early
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("the request waits in the socket's buffer");
    let next = gsup.expect_where("the next child", PATIENCE, |l| {
        l.starts_with("pid ") && field(l, "pid") != first
    });
    let mut answer = String::new();
    let _ = early.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("ok {}", field(&next, "pid"))),
        "the request sent while no child ran is answered by the next generation: {answer:?}\n{}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGTERM);
    gsup.wait_code(PATIENCE);
}

#[test]
fn a_missing_program_behind_the_shim_is_still_127() {
    let (_reserved, addr) = reserved_addr();
    let mut gsup = gsup_run(&["--listen", &format!("web={addr}"), "--", "/nonexistent/program"], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 127, "{}", gsup.stderr());
}

#[test]
fn a_port_in_use_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut gsup = gsup_run(
        &["--listen", &format!("web={addr}"), "--", CHILD, "echo", "child-ran"],
        &[],
    );
    assert_eq!(gsup.wait_code(PATIENCE), 2);
    assert!(gsup.stderr().contains("[[listen]] web"), "{}", gsup.stderr());
}
