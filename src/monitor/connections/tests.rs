//! Real loopback sockets; the test process plays the child's tree. Other tests of this
//! binary run in parallel threads of the same process and open sockets of their own, so
//! assertions look at the connections on a test's own listening port, and totals are only
//! checked for consistency (`active` = what `connections` lists).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn me() -> [Pid; 1] {
    [std::process::id() as Pid]
}

fn counter() -> ConnectionCounter {
    ConnectionCounter::new().expect("sock_diag socket")
}

/// The sample's inbound connections on `port`.
fn on_port(sample: &Connections, port: u16) -> Vec<&Inbound> {
    sample.connections.iter().filter(|c| c.local.port() == port).collect()
}

/// The single inbound connection on `port`, if there is exactly one.
fn only(sample: &Connections, port: u16) -> Option<&Inbound> {
    match on_port(sample, port)[..] {
        [c] => Some(c),
        _ => None,
    }
}

fn consistent(sample: &Connections) {
    assert_eq!(sample.active as usize, sample.connections.len(), "{sample:#?}");
    // In flight: the accepted connections that are, plus every queued one (DESIGN §4).
    let inflight = sample.connections.iter().filter(|c| c.in_flight).count() as u64 + sample.queued;
    assert_eq!(sample.inflight, inflight, "{sample:#?}");
    assert!(sample.unreadable.is_empty(), "{sample:#?}");
    for c in &sample.connections {
        assert!(
            sample.listening_ports.contains(&c.local.port()),
            "{c:?} is on a port the tree does not listen on"
        );
    }
}

/// Samples until `done` holds; the kernel updates its counters asynchronously (the peer's
/// ACK, a jiffy passing), so every check is a poll with a deadline.
fn sample_until(
    counter: &mut ConnectionCounter,
    tree: &[Pid],
    what: &str,
    done: impl Fn(&Connections) -> bool,
) -> Connections {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sample = counter.count(tree).expect("count");
        consistent(&sample);
        if done(&sample) {
            return sample;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for: {what}; last sample: {sample:#?}"
        );
        sleep(Duration::from_millis(5));
    }
}

/// A connected pair on `listener`: (client, server end).
fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().expect("local addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

#[test]
fn silent_accepted_connections_are_active_not_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let pairs: Vec<_> = (0..5).map(|_| pair(&listener)).collect();
    let mut counter = counter();
    let sample = sample_until(&mut counter, &me(), "5 silent connections", |s| {
        on_port(s, port).len() == 5
    });
    assert!(sample.listening_ports.contains(&port), "{sample:#?}");
    assert!(sample.active >= 5);
    for c in on_port(&sample, port) {
        assert!(!c.in_flight, "peer never sent a byte: {c:?}");
        assert_eq!(c.tcp.map(|t| t.data_segs_in), Some(0), "{c:?}");
    }
    // Negative control: the clients' ends are ESTABLISHED sockets of the same tree, on
    // ephemeral ports nobody listens on; counting them would double the figure.
    for (client, _) in &pairs {
        let local = client.local_addr().expect("addr");
        assert!(
            sample.connections.iter().all(|c| c.local != local),
            "the outbound end {local} was counted"
        );
    }
    // A closed connection leaves the count (FIN: the server end turns CLOSE_WAIT).
    drop(pairs);
    sample_until(&mut counter, &me(), "all closed", |s| on_port(s, port).is_empty());
}

/// A connection the tree has not accepted yet is in flight (DESIGN §4): no fd of the tree
/// holds it, but a drain that ended now would leave its request unanswered.
#[test]
fn unaccepted_connections_are_queued_and_in_flight_not_active() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let clients: Vec<_> = (0..2).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let mut counter = counter();
    let sample = sample_until(&mut counter, &me(), "2 in the accept queue", |s| s.queued >= 2);
    assert!(on_port(&sample, addr.port()).is_empty(), "{sample:#?}");
    assert!(sample.inflight >= 2, "queued connections are in flight: {sample:#?}");
    // Accepted, silent: active and no longer in flight (other tests' queues may add to
    // `inflight`, so look at this port's connections).
    let accepted: Vec<_> = clients.iter().map(|_| listener.accept().expect("accept")).collect();
    let sample = sample_until(&mut counter, &me(), "both accepted", |s| {
        on_port(s, addr.port()).len() == 2
    });
    assert!(
        on_port(&sample, addr.port()).iter().all(|c| !c.in_flight),
        "{sample:#?}"
    );
    drop(accepted);
}

/// One keep-alive connection through a request, its answer and a second request; DESIGN
/// §4's definition at each step.
fn request_lifecycle(bind: &str) {
    let listener = TcpListener::bind(bind).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (mut client, mut server) = pair(&listener);
    let mut counter = counter();
    let tree = me();

    sample_until(&mut counter, &tree, "connected, silent: not in flight", |s| {
        only(s, port).is_some_and(|c| !c.in_flight)
    });

    client.write_all(REQUEST).expect("request");
    let s = sample_until(&mut counter, &tree, "unread request: in flight", |s| {
        only(s, port).is_some_and(|c| c.recv_queue > 0)
    });
    assert!(only(&s, port).is_some_and(|c| c.in_flight), "{s:#?}");

    // Read but unanswered: the queues are empty, only tcp_info tells.
    server.read_exact(&mut vec![0; REQUEST.len()]).expect("read request");
    let s = sample_until(&mut counter, &tree, "read, unanswered", |s| {
        only(s, port).is_some_and(|c| c.recv_queue == 0)
    });
    let c = only(&s, port).expect("one connection");
    assert!(c.in_flight, "read but unanswered must be in flight: {c:?}");
    let tcp = c.tcp.expect("tcp_info");
    assert!(tcp.data_segs_in > 0 && tcp.data_segs_out == 0, "{c:?}");

    server.write_all(RESPONSE).expect("response");
    client.read_exact(&mut vec![0; RESPONSE.len()]).expect("read response");
    // Not in flight once the client has ACKed the answer (send_queue counts unacked
    // bytes; the client may delay its ACK).
    let s = sample_until(&mut counter, &tree, "answered: idle keep-alive", |s| {
        only(s, port).is_some_and(|c| !c.in_flight)
    });
    let c = only(&s, port).expect("one connection");
    assert_eq!((c.recv_queue, c.send_queue), (0, 0), "{c:?}");
    assert!(c.tcp.is_some_and(|t| t.data_segs_out > 0), "{c:?}");

    // A request within one jiffy of the answer is indistinguishable from it (DESIGN §4's
    // documented limit); wait until the kernel reports the answer as 20 ms old (two
    // jiffies at HZ=100) so the second request lands in a later jiffy.
    sample_until(&mut counter, &tree, "answer 20 ms old", |s| {
        only(s, port).is_some_and(|c| c.tcp.is_some_and(|t| t.last_data_sent_ms >= 20))
    });
    client.write_all(REQUEST).expect("second request");
    server
        .read_exact(&mut vec![0; REQUEST.len()])
        .expect("read second request");
    let s = sample_until(&mut counter, &tree, "second request read", |s| {
        only(s, port).is_some_and(|c| c.recv_queue == 0 && c.send_queue == 0)
    });
    let c = only(&s, port).expect("one connection");
    assert!(c.in_flight, "second request unanswered: {c:?}");
    let tcp = c.tcp.expect("tcp_info");
    assert!(tcp.last_data_recv_ms < tcp.last_data_sent_ms, "{c:?}");
}

#[test]
fn request_lifecycle_ipv4() {
    request_lifecycle("127.0.0.1:0");
}

#[test]
fn request_lifecycle_ipv6() {
    request_lifecycle("[::1]:0");
}

#[test]
fn dual_stack_listener_counts_ipv4_clients() {
    // A `[::]` listener accepts IPv4 clients as AF_INET6 sockets with v4-mapped
    // addresses: they are in the AF_INET6 dump.
    let listener = TcpListener::bind("[::]:0").expect("bind [::]");
    let port = listener.local_addr().expect("addr").port();
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connect over IPv4");
    let (_server, _) = listener.accept().expect("accept");
    let s = sample_until(&mut counter(), &me(), "one dual-stack connection", |s| {
        only(s, port).is_some()
    });
    let c = only(&s, port).expect("one connection");
    assert!(c.local.is_ipv6(), "{c:?}");
    let peer = match c.peer {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped(),
        SocketAddr::V4(_) => None,
    };
    assert_eq!(peer, Some(std::net::Ipv4Addr::LOCALHOST), "{c:?} vs {client:?}");
}

/// A listener in another process (this test binary, re-run as `listener_helper`): it
/// prints its port, accepts and holds connections, and exits when its stdin closes.
struct Helper {
    child: Child,
    port: u16,
    /// The lines it printed after its port.
    later: std::sync::mpsc::Receiver<String>,
}

impl Helper {
    fn spawn() -> Helper {
        Helper::spawn_as("listener_helper")
    }

    /// `helper`: the name of the `#[ignore]`d test that plays the helper.
    fn spawn_as(helper: &str) -> Helper {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                &format!("monitor::connections::tests::{helper}"),
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        let stdout = child.stdout.take().expect("helper stdout");
        // The harness prints its own output, "test <name> ... " even on the same line as
        // ours. Read on a thread so a helper that never prints fails the test, not hangs it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (later_tx, later) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let port = lines
                .by_ref()
                .find_map(|line| line.split_once("helper-port ")?.1.trim().parse::<u16>().ok());
            let _ = tx.send(port);
            // Kept reading, so the helper never writes to a closed pipe.
            for line in lines {
                let _ = later_tx.send(line);
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => port,
            other => {
                drop(Helper { child, port: 0, later });
                panic!("the helper printed no port: {other:?}");
            }
        };
        Helper { child, port, later }
    }

    fn pid(&self) -> Pid {
        self.child.id() as Pid
    }
}

impl Drop for Helper {
    #[allow(clippy::disallowed_methods)] // a unit test owns this child; no reaper runs here
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::SIGKILL);
        let _ = self.child.wait();
    }
}

const HELPER_ENV: &str = "GSUP_CONNECTIONS_TEST_HELPER";

#[test]
#[ignore = "a helper process for outbound_connections_are_not_counted"]
fn listener_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("helper-port {}", listener.local_addr().expect("addr").port());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    // Until the test drops its end of our stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn outbound_connections_are_not_counted() {
    let helper = Helper::spawn();
    // The tree (this process) listens too, with one inbound connection of its own.
    let own = TcpListener::bind("127.0.0.1:0").expect("bind");
    let own_port = own.local_addr().expect("addr").port();
    let _own_pair = pair(&own);
    let outbound = TcpStream::connect(("127.0.0.1", helper.port)).expect("connect to helper");
    let outbound_addr = outbound.local_addr().expect("addr");
    let mut counter = counter();

    // Positive control: from the helper's side the same connection is inbound, so the
    // dump does see it; and this process's listener is not the helper's.
    let theirs = sample_until(&mut counter, &[helper.pid()], "helper accepted", |s| {
        s.connections.iter().any(|c| c.peer == outbound_addr)
    });
    assert_eq!(theirs.listening_ports, [helper.port], "{theirs:#?}");
    assert!(on_port(&theirs, own_port).is_empty(), "{theirs:#?}");

    let ours = sample_until(&mut counter, &me(), "own connection counted", |s| {
        only(s, own_port).is_some()
    });
    assert!(!ours.listening_ports.contains(&helper.port), "{ours:#?}");
    assert!(
        ours.connections
            .iter()
            .all(|c| c.local != outbound_addr && c.peer.port() != helper.port),
        "the outbound connection {outbound_addr} -> {} was counted: {ours:#?}",
        helper.port
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a unit test owns this child; no reaper runs here
fn vanished_pids_are_skipped() {
    let mut exited = Command::new("true").spawn().expect("spawn true");
    let gone = exited.id() as Pid;
    exited.wait().expect("wait true");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _pair = pair(&listener);
    // Above the largest pid_max (2^22): never a process.
    let never = 0x3fff_fff0;
    let tree = [gone, never, std::process::id() as Pid];
    let s = sample_until(&mut counter(), &tree, "own connection", |s| only(s, port).is_some());
    assert!(s.unreadable.is_empty(), "{s:#?}");
    // Only vanished pids: an empty sample, not an error.
    let empty = counter().count(&[gone, never]).expect("count");
    assert_eq!(empty, Connections::default());
}

#[test]
fn in_flight_follows_design_4() {
    let t = |sent, recv, segs_in, segs_out| {
        Some(TcpTimes {
            last_data_sent_ms: sent,
            last_data_recv_ms: recv,
            data_segs_in: segs_in,
            data_segs_out: segs_out,
        })
    };
    // (recv_queue, send_queue, tcp_info, in flight, why)
    let cases = [
        (0, 0, t(500, 500, 0, 0), false, "peer never sent a byte"),
        (0, 0, None, false, "no tcp_info, empty queues"),
        (7, 0, t(500, 500, 0, 0), true, "unread bytes"),
        (0, 7, t(500, 500, 1, 1), true, "unsent or unacked bytes"),
        (7, 0, None, true, "unread bytes without tcp_info"),
        (0, 0, t(500, 3, 1, 0), true, "request read, nothing sent yet"),
        (0, 0, t(500, 500, 1, 0), true, "request read, nothing sent, same jiffy"),
        (0, 0, t(3, 500, 1, 1), false, "answer after request: idle keep-alive"),
        (0, 0, t(40, 40, 2, 1), false, "same jiffy once data was sent: answered"),
        (0, 0, t(900, 4, 2, 1), true, "second request after the answer"),
    ];
    for (rq, sq, tcp, want, why) in cases {
        assert_eq!(in_flight(rq, sq, tcp), want, "{why}");
    }
}

#[test]
fn tcp_info_offsets_match_linux_tcp_h() {
    #[cfg(any(target_env = "gnu", target_env = "musl"))]
    {
        use std::mem::offset_of;
        assert_eq!(offset_of!(libc::tcp_info, tcpi_last_data_sent), tcpi::LAST_DATA_SENT);
        assert_eq!(offset_of!(libc::tcp_info, tcpi_last_data_recv), tcpi::LAST_DATA_RECV);
        assert_eq!(offset_of!(libc::tcp_info, tcpi_data_segs_in), tcpi::DATA_SEGS_IN);
        assert_eq!(offset_of!(libc::tcp_info, tcpi_data_segs_out), tcpi::DATA_SEGS_OUT);
    }
    let mut info = vec![0u8; 232];
    for (at, value) in [(44, 11u32), (52, 22), (152, 33), (156, 44)] {
        info[at..at + 4].copy_from_slice(&value.to_ne_bytes());
    }
    assert_eq!(
        TcpTimes::parse(&info),
        Some(TcpTimes {
            last_data_sent_ms: 11,
            last_data_recv_ms: 22,
            data_segs_in: 33,
            data_segs_out: 44,
        })
    );
    assert!(TcpTimes::parse(&info[..160]).is_some(), "through data_segs_out");
    // Linux < 4.6: no data_segs_*; the queues alone decide.
    assert_eq!(TcpTimes::parse(&info[..159]), None);
    assert_eq!(TcpTimes::parse(&info[..104]), None);
}

/// CPU per `count()` (DEPS §11 measured the dump alone at 0.29 ms); run by
/// bench/connections_cost.sh in release. `GSUP_BENCH_CONNECTIONS` accepted connections
/// (default 20; both ends live in this process, so 2 sockets each).
#[test]
#[ignore = "benchmark: bench/connections_cost.sh"]
fn count_cost() {
    use nix::sys::resource::{UsageWho, getrusage};
    let n: usize = std::env::var("GSUP_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _pairs: Vec<_> = (0..n).map(|_| pair(&listener)).collect();
    let mut counter = counter();
    let tree = me();
    let first = sample_until(&mut counter, &tree, "the connections", |s| on_port(s, port).len() == n);
    // The count runs on this thread, the dump in its syscalls: thread CPU is the cost.
    let cpu = || {
        let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
        tv(usage.user_time()) + tv(usage.system_time())
    };
    let rounds = 200;
    let (start, wall) = (cpu(), Instant::now());
    let mut seen = 0;
    for _ in 0..rounds {
        seen += on_port(&counter.count(&tree).expect("count"), port).len();
    }
    let (per_count, wall) = ((cpu() - start) / rounds as f64, wall.elapsed() / rounds);
    assert_eq!(seen, n * rounds as usize, "the connections stayed");
    // The /proc/<pid>/fd walk alone, to split the figure.
    let start = cpu();
    let mut inodes = Vec::new();
    for _ in 0..rounds {
        inodes.clear();
        socket_inodes(tree[0], &mut inodes).expect("fd walk");
    }
    let walk = (cpu() - start) / rounds as f64;
    // A sample that walks every fd (what a sample costs when a connection was accepted
    // since the last one, and every FULL_WALK_EVERY samples).
    let start = cpu();
    for _ in 0..rounds {
        counter.fds.since_full = FULL_WALK_EVERY;
        seen += on_port(&counter.count(&tree).expect("count"), port).len();
    }
    let walking = (cpu() - start) / rounds as f64;
    assert_eq!(seen, 2 * n * rounds as usize, "the connections stayed");
    println!(
        "connections_cost: {per_count:.0} us CPU per count of {n} inbound connections \
         ({} socket fds in the tree; a count that re-walks them {walking:.0} us, the walk alone \
         {walk:.0} us; wall {wall:?}); kernel {}",
        first.sockets,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
}

/// The fd cache (see `ConnectionCounter`): every change shows in the very next sample,
/// no polling; a closed connection and an unchanged tree cost no walk.
#[test]
fn cached_walk_sees_changes_in_the_next_sample() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut counter = counter();
    let tree = me();
    assert!(on_port(&counter.count(&tree).expect("count"), port).is_empty());

    // A new accepted connection: an unplaced inode on a tree port, walked at once.
    let (client, server) = pair(&listener);
    let s = counter.count(&tree).expect("count");
    consistent(&s);
    assert_eq!(on_port(&s, port).len(), 1, "{s:#?}");

    // Unchanged: no walk (other tests' sockets may force one; then retry).
    let quiet = (0..50).any(|_| {
        let before = counter.fds.since_full;
        let s = counter.count(&tree).expect("count");
        before < FULL_WALK_EVERY - 1 && counter.fds.since_full == before + 1 && on_port(&s, port).len() == 1
    });
    assert!(quiet, "an unchanged tree kept re-walking");

    // Closed: the server end leaves ESTABLISHED on close(), so the next sample drops it.
    drop(server);
    let s = counter.count(&tree).expect("count");
    assert!(on_port(&s, port).is_empty(), "{s:#?}");
    drop(client);

    // A listener opened after the first samples, with a connection: both found at once.
    let late = TcpListener::bind("[::1]:0").expect("bind late");
    let late_port = late.local_addr().expect("addr").port();
    let _late_pair = pair(&late);
    let s = counter.count(&tree).expect("count");
    consistent(&s);
    assert!(s.listening_ports.contains(&late_port), "{s:#?}");
    assert_eq!(on_port(&s, late_port).len(), 1, "{s:#?}");
    assert!(!counter.no_filter, "the kernel refused the port filter");
}

#[test]
#[ignore = "a helper process for the socketless tests"]
fn late_listener_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    // No socket, one file, until the test writes a line: then a listener, and its port.
    // On "swap" the file is closed first, so the fd count stays the same.
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    println!("helper-port 1");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim() == "swap" {
        drop(file);
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("late-port {}", listener.local_addr().expect("addr").port());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// `/proc/<pid>/fd` entries, as the monitor's sample counts them.
fn fd_count(pid: Pid) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd dir").count() as u64
}

/// A socketless helper, sampled `samples` times with no dump; then told `command`, and
/// the port of its new listener.
fn socketless_helper(counter: &mut ConnectionCounter, samples: u32, command: &str) -> (Helper, u16) {
    let mut helper = Helper::spawn_as("late_listener_helper");
    let tree = [helper.pid()];
    for _ in 0..samples {
        let s = counter.count_sampled(&tree, &[fd_count(tree[0])]).expect("count");
        assert_eq!((s.sockets, s.active), (0, 0), "{s:#?}");
    }
    assert_eq!(counter.seq, 0, "a socketless tree was dumped");
    let stdin = helper.child.stdin.as_mut().expect("helper stdin");
    stdin
        .write_all(format!("{command}\n").as_bytes())
        .expect("tell the helper");
    let port = loop {
        let line = helper
            .later
            .recv_timeout(Duration::from_secs(30))
            .expect("the helper's port");
        if let Some(port) = line
            .split_once("late-port ")
            .and_then(|(_, p)| p.trim().parse::<u16>().ok())
        {
            break port;
        }
    };
    (helper, port)
}

/// `count_sampled` does no dump while the tree holds no socket, and finds a listener in
/// the first sample after it opens one (its fd count changed).
#[test]
fn a_socketless_tree_is_not_dumped_until_it_opens_a_socket() {
    let mut counter = counter();
    let (helper, port) = socketless_helper(&mut counter, 3, "listen");
    let tree = [helper.pid()];
    let s = counter.count_sampled(&tree, &[fd_count(tree[0])]).expect("count");
    assert!(
        s.listening_ports.contains(&port),
        "the new listener went unseen: {s:#?}"
    );
    assert!(counter.seq > 0, "no dump once the tree had a socket");
}

/// A listener that took a closed file's place (the fd count unchanged) is found by the
/// periodic LISTEN dumps, within `FULL_WALK_EVERY` samples.
#[test]
fn a_listener_in_a_closed_files_place_is_found_by_the_periodic_dump() {
    let mut counter = counter();
    let (helper, port) = socketless_helper(&mut counter, 1, "swap");
    let tree = [helper.pid()];
    let found = (0..FULL_WALK_EVERY).find(|_| {
        let s = counter.count_sampled(&tree, &[fd_count(tree[0])]).expect("count");
        s.listening_ports.contains(&port)
    });
    assert!(found.is_some(), "not found in {FULL_WALK_EVERY} samples");
    // Not at once: the count did not change (else this tests the other path).
    assert!(found > Some(0), "found in the first sample");
}

/// An `exec` can close one fd (bash's script) as the new program opens a socket: the
/// fingerprint changes with the command as well as with the count.
#[test]
fn fingerprints_follow_the_fd_count_and_the_command() {
    let bash = fingerprint(4, "bash start.sh");
    assert_eq!(bash, fingerprint(4, "bash start.sh"));
    assert_ne!(bash, fingerprint(4, "./server --port 8080"));
    assert_ne!(bash, fingerprint(5, "bash start.sh"));
}

#[test]
fn a_pid_leaving_the_tree_takes_its_sockets() {
    let helper = Helper::spawn();
    let _to_helper = TcpStream::connect(("127.0.0.1", helper.port)).expect("connect to helper");
    let mut counter = counter();
    let both = [std::process::id() as Pid, helper.pid()];
    sample_until(&mut counter, &both, "the helper's connection", |s| {
        s.listening_ports.contains(&helper.port) && only(s, helper.port).is_some()
    });
    let s = counter.count(&me()).expect("count");
    consistent(&s);
    assert!(!s.listening_ports.contains(&helper.port), "{s:#?}");
    assert!(on_port(&s, helper.port).is_empty(), "{s:#?}");
    // And back: a pid joining the tree is walked in that sample.
    let s = counter.count(&both).expect("count");
    assert!(only(&s, helper.port).is_some(), "{s:#?}");
}

/// The bytecode of `port_filter`, run by the kernel: only the ports asked for come back.
#[test]
fn port_filter_keeps_only_its_ports() {
    let listeners: Vec<_> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect();
    let _pairs: Vec<_> = listeners.iter().map(pair).collect();
    let counter = counter();
    let mut wanted = vec![ports[0], ports[2]];
    wanted.sort_unstable();
    let mut bytecode = Vec::new();
    port_filter(&wanted, &mut bytecode);
    let mut buf = vec![0; BUFFER_LEN];
    let mut seen = Vec::new();
    dump(
        &counter.socket,
        &mut buf,
        1,
        AF_INET,
        DumpKind::Established,
        &bytecode,
        |r| seen.push(r.header.socket_id.source_port),
    )
    .expect("filtered dump");
    assert!(seen.iter().all(|p| wanted.contains(p)), "{seen:?} vs {wanted:?}");
    assert!(seen.contains(&ports[0]) && seen.contains(&ports[2]), "{seen:?}");
    assert!(!seen.contains(&ports[1]), "{seen:?}");
    // One port alone (no JMP chain to the next).
    port_filter(&ports[1..2], &mut bytecode);
    seen.clear();
    dump(
        &counter.socket,
        &mut buf,
        2,
        AF_INET,
        DumpKind::Established,
        &bytecode,
        |r| seen.push(r.header.socket_id.source_port),
    )
    .expect("filtered dump");
    assert_eq!(seen, [ports[1]]);
}
