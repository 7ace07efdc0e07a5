//! Inbound connections of the child's tree, read from the kernel (DESIGN §4, §6, §7;
//! DEPS §11): how many there are (`graceful_shutdown_active_connections`) and how many
//! carry a request that has not been answered (`gsup_inflight_connections`, the drain's
//! wait condition).
//!
//! One [`ConnectionCounter::count`] is one sample:
//!
//! 1. one sock_diag dump (sock_diag(7)) per address family of the TCP LISTEN sockets;
//! 2. the tree's socket inodes, from the `socket:[N]` links in `/proc/<pid>/fd` (proc(5)),
//!    cached between samples (see [`ConnectionCounter`] for when they are re-read);
//! 3. the listening ports are the ports of the tree's LISTEN sockets; one dump per family
//!    of the ESTABLISHED sockets on those ports, with `INET_DIAG_INFO` (the kernel's
//!    `struct tcp_info`), filtered by local port in the kernel ([`port_filter`]); an
//!    inbound connection is an ESTABLISHED socket of the tree (its inode) whose local port
//!    is one of them, so the child's outbound pools (databases, upstreams) never count,
//!    nor connections another process accepted on a shared or SO_REUSEPORT port;
//! 4. in flight per DESIGN §4 ([`in_flight`]), plus every connection still in an accept
//!    queue of the tree's listeners (`idiag_rqueue` of a LISTEN socket): the tree has not
//!    accepted it, so no fd holds it, and a drain must not end before it is answered.
//!
//! [`ConnectionCounter::count_sampled`] (the monitor's samples) skips 1 and 3 while the
//! tree holds no socket at all ([`ConnectionCounter::socketless`]).
//!
//! DEPS §11 said "no bytecode filter"; it is used now because it shrinks the
//! ESTABLISHED dump (the tree's own outbound ends and the rest of the machine are not built,
//! sent and parsed), and a kernel that refuses it (EINVAL) gets unfiltered dumps, with
//! ports matched here as before. Netlink sees gsup's network namespace only: a child in
//! another netns has no inbound connections as far as this module can tell.
//!
//! This module only reads /proc and asks the kernel; it never touches a socket or a
//! process of the child. The supervisor owns the timer that calls it (every `interval`,
//! every 100 ms during `drain`).
//!
//! Crates: `netlink-sys` for the socket and `netlink-packet-sock-diag` for the request
//! and the response header. `tcp_info` comes as raw bytes (no `rich_nlas` feature, which
//! would parse the whole 232-byte struct into ~60 fields per socket); [`TcpTimes::parse`]
//! reads the four fields DESIGN §4 needs at the offsets of `linux/tcp.h`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, TCP_ESTABLISHED, TCP_LISTEN};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, nlas::Nla};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use super::procfs::Pid;

/// Dump datagrams are at most 32 KiB (the kernel sizes them from the reader's buffer, up
/// to 32 KiB); a smaller buffer truncates them (the crate's example uses 4 KiB: DEPS §11).
const BUFFER_LEN: usize = 32 * 1024;

/// A dump answers in microseconds; this only bounds a wedged kernel or a lost datagram,
/// so one bad sample cannot stall the monitor (or the drain) forever.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// Byte offsets in `struct tcp_info` (`/usr/include/linux/tcp.h`; checked with
/// `offsetof` on this machine and against `libc::tcp_info` in the tests). All are `__u32`
/// in host byte order, like every netlink payload.
mod tcpi {
    /// Milliseconds since the last data segment was sent (`jiffies - lsndtime`).
    pub const LAST_DATA_SENT: usize = 44;
    /// Milliseconds since the last data segment was received (`jiffies - lrcvtime`).
    pub const LAST_DATA_RECV: usize = 52;
    /// Data segments received; Linux 4.6.
    pub const DATA_SEGS_IN: usize = 152;
    /// Data segments sent; Linux 4.6.
    pub const DATA_SEGS_OUT: usize = 156;
    /// The shortest `tcp_info` that holds all four (through `tcpi_data_segs_out`).
    pub const MIN_LEN: usize = DATA_SEGS_OUT + 4;
}

/// The four `tcp_info` fields that tell an answered connection from an unanswered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimes {
    /// `tcpi_last_data_sent`: ms since this side last sent data (jiffy resolution).
    pub last_data_sent_ms: u32,
    /// `tcpi_last_data_recv`: ms since this side last received data (jiffy resolution).
    pub last_data_recv_ms: u32,
    /// `tcpi_data_segs_in`: data segments received so far.
    pub data_segs_in: u32,
    /// `tcpi_data_segs_out`: data segments sent so far.
    pub data_segs_out: u32,
}

impl TcpTimes {
    /// Reads the raw `INET_DIAG_INFO` attribute. `None` when it is too short to hold
    /// `tcpi_data_segs_out`: a kernel older than 4.6 (DESIGN §4 needs ≥ 4.6), where the
    /// counter falls back to the queues alone.
    pub fn parse(info: &[u8]) -> Option<Self> {
        if info.len() < tcpi::MIN_LEN {
            return None;
        }
        let field = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&info[at..at + 4]);
            u32::from_ne_bytes(word)
        };
        Some(TcpTimes {
            last_data_sent_ms: field(tcpi::LAST_DATA_SENT),
            last_data_recv_ms: field(tcpi::LAST_DATA_RECV),
            data_segs_in: field(tcpi::DATA_SEGS_IN),
            data_segs_out: field(tcpi::DATA_SEGS_OUT),
        })
    }
}

/// Whether an inbound connection is in flight (DESIGN §4): unread received bytes,
/// unsent or unacknowledged sent bytes, or request data with no answer after it.
///
/// The `tcp_info` times are "ms ago", so `last_data_recv < last_data_sent` means the
/// last request came in after the last answer went out. They have jiffy resolution and a
/// new socket starts with both equal, so equal counts as answered once data was sent; a
/// request that arrives within one jiffy of the previous answer is missed (a documented
/// limit). A connection whose peer never sent a byte (`data_segs_in == 0`) is not in
/// flight, nor is an idle keep-alive connection.
pub fn in_flight(recv_queue: u32, send_queue: u32, tcp: Option<TcpTimes>) -> bool {
    if recv_queue > 0 || send_queue > 0 {
        return true;
    }
    tcp.is_some_and(|t| t.data_segs_in > 0 && (t.data_segs_out == 0 || t.last_data_recv_ms < t.last_data_sent_ms))
}

/// One inbound connection of a sample, for debugging and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The tree's end: the address and listening port the peer connected to.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The socket's inode (`socket:[N]` in `/proc/<pid>/fd`).
    pub inode: u32,
    /// Received bytes the child has not read.
    pub recv_queue: u32,
    /// For TCP the kernel reports unsent + unacknowledged bytes here (DEPS §11).
    pub send_queue: u32,
    /// `None` without `INET_DIAG_INFO` or with a pre-4.6 `tcp_info`.
    pub tcp: Option<TcpTimes>,
    pub in_flight: bool,
}

/// One sample of the tree's inbound connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// ESTABLISHED inbound connections: `graceful_shutdown_active_connections`.
    pub active: u64,
    /// In flight: those of them in flight, plus every connection in `queued`;
    /// `gsup_inflight_connections`, what the drain waits for.
    pub inflight: u64,
    /// Ports the tree listens on (any address, either family), ascending, no repeats.
    pub listening_ports: Vec<u16>,
    /// Connections the kernel completed but the tree has not `accept`ed yet (the sum of
    /// its listeners' accept queues, `idiag_rqueue` of each LISTEN socket). They have no
    /// inode yet, so they are not in `active`, but each is in flight (DESIGN §4): its
    /// request, if any, is unanswered, and a drain that ended now would lose it.
    pub queued: u64,
    /// Socket inodes found in the tree's fd tables (TCP or not).
    pub sockets: usize,
    /// Pids of the tree whose fd table could not be read (not "vanished": those are
    /// skipped silently). Non-empty means the counts are too low: gsup lacks the
    /// permission to read `/proc/<pid>/fd` of a child running as another user.
    pub unreadable: Vec<Pid>,
    /// Whether the kernel flagged a dump as interrupted (`NLM_F_DUMP_INTR`: the socket
    /// table changed while it was read): a socket may be missing or seen twice. The next
    /// sample is consistent again.
    pub interrupted: bool,
    /// Every inbound connection, in dump order.
    pub connections: Vec<Inbound>,
}

/// A full re-walk of every pid's fd table at least every this many samples, whatever the
/// dumps show: the safety net for what they cannot show (see [`ConnectionCounter`]). At the
/// default 1 s interval that is every 10 s, every 1 s during `drain`.
const FULL_WALK_EVERY: u32 = 10;

/// While the tree holds no socket, the full fd walk runs only every this many samples
/// (the LISTEN dumps stand in for it in between, see [`ConnectionCounter::socketless`]):
/// every minute at the default 1 s interval.
const SOCKETLESS_FULL_WALK_EVERY: u32 = 6 * FULL_WALK_EVERY;

/// Above this many listening ports the ESTABLISHED dumps go unfiltered (the bytecode would
/// grow past what a port test saves; `inet_diag_bc_op.no` is also only 16 bits).
const MAX_FILTER_PORTS: usize = 64;

/// What a `/proc` sample saw of a pid's fd table without walking it: changes when its
/// open-fd count changes or it execs (its command changes). See
/// [`ConnectionCounter::socketless`].
pub fn fingerprint(open_fds: u64, command: &str) -> u64 {
    use std::hash::BuildHasher;
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one((open_fds, command))
}

/// See [`ConnectionCounter::socketless`].
enum Sockets {
    /// The tree holds a socket, as far as the walks know: dump.
    Held,
    /// It holds none: nothing to dump.
    NoneHeld,
    /// It holds none as far as the counts show; the periodic LISTEN dumps check.
    Recheck,
}

/// The fd tables of the tree as of each pid's last walk.
#[derive(Debug, Default)]
struct FdCache {
    /// Socket inodes per pid, from its last walk.
    pids: HashMap<Pid, Vec<u32>>,
    /// The union of `pids`: the tree's socket inodes as far as the walks know.
    known: HashSet<u32>,
    /// Inodes that mattered (a LISTEN socket, or an ESTABLISHED one on a port the tree
    /// listens on) and that two walks in a row did not find in the tree: another
    /// process's listener, or a connection accepted by another process on a shared or
    /// SO_REUSEPORT port (the other generation during a reload, DESIGN §8). They do not
    /// trigger walks; the next full walk re-checks them.
    foreign: HashSet<u32>,
    /// Inodes that mattered and that one walk did not find: one more walk decides. (A
    /// connection is in the dump from `accept`'s graft, a moment before its fd is
    /// installed; one miss is not proof.)
    suspect: HashSet<u32>,
    /// Samples since the last full walk.
    since_full: u32,
    /// Each pid's fingerprint at the last `count_sampled` (see
    /// [`ConnectionCounter::socketless`]).
    fingerprints: HashMap<Pid, u64>,
    /// Pids `sync_tree` walked in this sample (they joined the tree).
    walked_now: Vec<Pid>,
    /// Samples in a row that found the tree without a socket.
    socketless_samples: u32,
}

/// Counts the tree's inbound connections; one for the whole run.
///
/// **The fd walk is cached.** Reading every `/proc/<pid>/fd` link costs about 1 µs per
/// fd (1.1 ms for 1,000 sockets), more than everything else of a sample, and the inodes
/// of a live process's fds change only when it opens or closes one. So a pid's fd table
/// is walked when it joins the tree, and all of them again only when a dump shows an
/// inode that matters and that the cache cannot place: a LISTEN socket, or an
/// ESTABLISHED one on a port the tree listens on, that is neither a known inode of the
/// tree nor [`FdCache::foreign`]. A new accepted connection or a new listener of the tree
/// is such an inode, so it is counted in the very sample that first sees it; a closed
/// connection leaves the ESTABLISHED dump, so it is gone in the next sample without a
/// walk; a pid that leaves the tree takes its inodes with it.
///
/// What the dumps cannot show, and only the full walk every [`FULL_WALK_EVERY`] samples
/// catches: an fd the tree closed or handed out (SCM_RIGHTS) while another process keeps
/// the socket open (it stays counted), a foreign socket handed into the tree (it stays
/// uncounted), and a recycled inode number. All are bounded to `FULL_WALK_EVERY`
/// samples.
///
/// A server that accepts a connection between most samples still walks at most samples,
/// so the walk itself is kept cheap too ([`socket_inodes`]).
pub struct ConnectionCounter {
    /// NETLINK_SOCK_DIAG socket connected to the kernel; requests go out one at a time
    /// and every reply is read to NLMSG_DONE before the next request.
    socket: Socket,
    /// Receive buffer for one dump datagram, reused across samples (also holds the
    /// outgoing request, which is sent before any reply is read). Empty until the first
    /// sample: zeroing 32 KiB was 3 % of `gsup run -- true`'s instructions, and a child
    /// that exits before the first tick never needs it (issue 14).
    buf: Vec<u8>,
    /// Sequence number of the last request: replies with another one are leftovers of a
    /// dump abandoned by an error and are skipped.
    seq: u32,
    fds: FdCache,
    /// Scratch, kept for the allocations: the LISTEN sockets of both families (family,
    /// inode, port, accept queue), the ESTABLISHED sockets on candidate ports, the
    /// bytecode.
    listeners: Vec<(u8, u32, u16, u32)>,
    established: Vec<Inbound>,
    bytecode: Vec<u8>,
    /// Set when the kernel refused the port filter (EINVAL): the ESTABLISHED dumps go
    /// unfiltered from then on, and ports are matched here only.
    no_filter: bool,
}

impl ConnectionCounter {
    /// Opens the sock_diag socket. Fails only when netlink is unavailable (a seccomp
    /// profile, a kernel without `CONFIG_INET_DIAG`).
    pub fn new() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&NetlinkAddr::new(0, 0))?;
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0),
        )
        .map_err(io::Error::from)?;
        Ok(ConnectionCounter {
            socket,
            buf: Vec::new(),
            seq: 0,
            fds: FdCache::default(),
            listeners: Vec::new(),
            established: Vec::new(),
            bytecode: Vec::new(),
            no_filter: false,
        })
    }

    /// One sample of the inbound connections of `tree` (the pids of the child's tree,
    /// e.g. from `procfs::descendants`). A pid that has exited is skipped. Errors are
    /// netlink failures only; a failed sample leaves the counter usable.
    pub fn count(&mut self, tree: &[Pid]) -> io::Result<Connections> {
        self.count_inner(tree, None)
    }

    /// Like [`ConnectionCounter::count`], with each pid's [`fingerprint`] from the same
    /// tick's `/proc` sample (`fingerprints[i]` is `tree[i]`'s; `tree` sorted ascending).
    /// While the tree holds no socket at all, nothing is dumped: each LISTEN dump scans
    /// the kernel's whole listening hash whatever it finds, and the two of them were a
    /// tenth of an idle 50-process tree's sample (issue 14). See
    /// [`ConnectionCounter::socketless`]. Not for the drain's samples: they must see a
    /// listener the fingerprints missed at once.
    pub fn count_sampled(&mut self, tree: &[Pid], fingerprints: &[u64]) -> io::Result<Connections> {
        self.count_inner(tree, Some(fingerprints))
    }

    fn count_inner(&mut self, tree: &[Pid], fingerprints: Option<&[u64]>) -> io::Result<Connections> {
        let mut out = Connections::default();
        if self.sync_tree(tree, &mut out.unreadable) {
            self.fds.rebuild();
        }
        if self.fds.pids.is_empty() {
            // No pid of the tree could be read (all gone): nothing can be the tree's.
            return Ok(out);
        }
        // The periodic full walk, unless the LISTEN dumps stand in for it (`Recheck`).
        let mut walk_when_due = true;
        if let Some(fingerprints) = fingerprints {
            match self.socketless(tree, fingerprints, &mut out.unreadable) {
                Sockets::NoneHeld => return Ok(out),
                Sockets::Recheck => walk_when_due = false,
                Sockets::Held => {}
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0; BUFFER_LEN];
        }

        // 1. Every LISTEN socket of both families: cheap (the kernel skips its
        // established hash for a LISTEN-only dump), and no tcp_info.
        self.listeners.clear();
        for family in [AF_INET, AF_INET6] {
            self.seq = self.seq.wrapping_add(1);
            let listeners = &mut self.listeners;
            out.interrupted |= dump(
                &self.socket,
                &mut self.buf,
                self.seq,
                family,
                DumpKind::Listen,
                &[],
                |r| {
                    let h = &r.header;
                    if h.state != TCP_LISTEN {
                        return;
                    }
                    // For a listener the kernel reports its accept-queue length here.
                    listeners.push((family, h.inode, h.socket_id.source_port, h.recv_queue));
                },
            )?;
        }

        // 2. A listener the cache cannot place is decided now, by a walk (a listener's fd
        // exists from socket(), before listen()), so that the ESTABLISHED dumps below run
        // for the tree's own listening ports only. Each of them scans the kernel's whole
        // established hash (0.2 ms idle, 4-5 ms with ~1,500 sockets on 2 busy cores), and
        // a listener another process opens on the machine (tests, other services) would
        // otherwise cost two of them before the walks call it foreign. Connections on a
        // port whose listener is not the tree's are never counted (step 5), so this
        // changes what is dumped, not what is counted.
        self.fds.since_full += 1;
        let unplaced = |fds: &FdCache, inode: &u32| !fds.known.contains(inode) && !fds.foreign.contains(inode);
        if self.listeners.iter().any(|(_, inode, _, _)| unplaced(&self.fds, inode)) {
            out.unreadable.clear();
            self.walk_all(tree, &mut out.unreadable);
            // The earlier suspects too: a second walk that misses one makes it foreign.
            let relevant: Vec<u32> = (self.listeners.iter().map(|&(_, inode, _, _)| inode))
                .chain(self.fds.suspect.iter().chain(&self.fds.foreign).copied())
                .collect();
            self.fds.classify(relevant.into_iter());
        }
        let mut ports: Vec<u16> = self
            .listeners
            .iter()
            .filter(|(_, inode, _, _)| self.fds.known.contains(inode))
            .map(|&(_, _, port, _)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();

        // 3. The ESTABLISHED sockets on those ports, with tcp_info. The kernel filters by
        // local port (an inet_diag bytecode), so the tree's outbound connections and the
        // rest of the machine's sockets are neither built nor sent nor parsed.
        self.established.clear();
        if !ports.is_empty() {
            let filter = !self.no_filter && ports.len() <= MAX_FILTER_PORTS;
            if filter {
                port_filter(&ports, &mut self.bytecode);
            } else {
                self.bytecode.clear();
            }
            for family in [AF_INET, AF_INET6] {
                // Each ESTABLISHED dump scans the kernel's whole established hash (shared
                // by both families: 262,144 buckets here, ~0.2 ms), so a family without a
                // candidate listener is not dumped: its connections can only be on a
                // listener of its own family (IPv4 clients of a dual-stack `[::]`
                // listener are AF_INET6 sockets).
                let wanted = self
                    .listeners
                    .iter()
                    .any(|(f, inode, _, _)| *f == family && self.fds.known.contains(inode));
                if !wanted {
                    continue;
                }
                self.seq = self.seq.wrapping_add(1);
                let (established, ports) = (&mut self.established, &ports);
                let mut visit = |r: &InetResponse| {
                    let h = &r.header;
                    let id = &h.socket_id;
                    // Inode 0: still in the accept queue, no fd anywhere yet (`queued`).
                    if h.state != TCP_ESTABLISHED || h.inode == 0 || ports.binary_search(&id.source_port).is_err() {
                        return;
                    }
                    let tcp = r.nlas.iter().find_map(|nla| match nla {
                        Nla::TcpInfo(info) => TcpTimes::parse(info),
                        _ => None,
                    });
                    established.push(Inbound {
                        local: SocketAddr::new(id.source_address, id.source_port),
                        peer: SocketAddr::new(id.destination_address, id.destination_port),
                        inode: h.inode,
                        recv_queue: h.recv_queue,
                        send_queue: h.send_queue,
                        tcp,
                        in_flight: in_flight(h.recv_queue, h.send_queue, tcp),
                    });
                };
                let result = dump(
                    &self.socket,
                    &mut self.buf,
                    self.seq,
                    family,
                    DumpKind::Established,
                    &self.bytecode,
                    &mut visit,
                );
                let interrupted = match result {
                    // A kernel that rejects the bytecode: once, then never filter again.
                    Err(err) if filter && err.raw_os_error() == Some(libc::EINVAL) => {
                        self.no_filter = true;
                        self.seq = self.seq.wrapping_add(1);
                        dump(
                            &self.socket,
                            &mut self.buf,
                            self.seq,
                            family,
                            DumpKind::Established,
                            &[],
                            visit,
                        )?
                    }
                    other => other?,
                };
                out.interrupted |= interrupted;
            }
        }

        // 4. Walk the whole tree again if the ESTABLISHED dumps show an inode the cache
        // cannot place (a connection accepted since), or as the periodic safety net.
        let due = (walk_when_due && self.fds.since_full >= FULL_WALK_EVERY)
            || self.established.iter().any(|c| unplaced(&self.fds, &c.inode));
        if due {
            out.unreadable.clear();
            self.walk_all(tree, &mut out.unreadable);
            let relevant = self
                .listeners
                .iter()
                .map(|&(_, inode, _, _)| inode)
                .chain(self.established.iter().map(|c| c.inode));
            self.fds.classify(relevant);
        }

        // 5. Classify with the tree's inodes.
        let known = &self.fds.known;
        for &(_, inode, port, queue) in &self.listeners {
            if known.contains(&inode) {
                out.listening_ports.push(port);
                out.queued += u64::from(queue);
            }
        }
        out.listening_ports.sort_unstable();
        out.listening_ports.dedup();
        let ports = &out.listening_ports;
        out.connections.extend(
            self.established
                .drain(..)
                .filter(|c| known.contains(&c.inode) && ports.binary_search(&c.local.port()).is_ok()),
        );
        out.sockets = known.len();
        out.active = out.connections.len() as u64;
        out.inflight = out.connections.iter().filter(|c| c.in_flight).count() as u64 + out.queued;
        Ok(out)
    }

    /// What the walks and the samples' fingerprints say of the tree's sockets.
    ///
    /// The walks say the tree holds none (`known` is empty), and the fingerprints keep that
    /// true between walks: a socket is an fd, so a pid whose open-fd count or command
    /// changed since the last sample (an `exec` may close one fd as the program opens a
    /// socket) is walked again now. A socket found ends this until a walk finds none again.
    ///
    /// What a fingerprint cannot show is a pid that closed one fd and opened a socket
    /// within one interval, without an `exec`. Every [`FULL_WALK_EVERY`] samples this says
    /// [`Sockets::Recheck`], and the LISTEN dumps run instead of the full walk: an
    /// unplaced listener makes the sample walk the tree (step 2 of `count_inner`), and only
    /// a listener of the tree can make its connections count. Two dumps cost a fraction of
    /// a walk of every fd of the tree. A listener the walks called foreign before (another
    /// process's, then handed into the tree) is not unplaced: the full walk every
    /// [`SOCKETLESS_FULL_WALK_EVERY`] samples finds it.
    fn socketless(&mut self, tree: &[Pid], fingerprints: &[u64], unreadable: &mut Vec<Pid>) -> Sockets {
        debug_assert!(tree.is_sorted(), "count_sampled takes the tree sorted");
        self.fds.fingerprints.retain(|pid, _| tree.binary_search(pid).is_ok());
        let held = !self.fds.known.is_empty();
        let mut walked = false;
        for (&pid, &fingerprint) in tree.iter().zip(fingerprints) {
            let before = self.fds.fingerprints.insert(pid, fingerprint);
            // While sockets are held the dumps decide; a pid walked this sample (it just
            // joined the tree) was walked after its fingerprint was read.
            if !held && before != Some(fingerprint) && !self.fds.walked_now.contains(&pid) {
                self.walk(pid, unreadable);
                walked = true;
            }
        }
        if held {
            self.fds.socketless_samples = 0;
            return Sockets::Held;
        }
        if walked {
            self.fds.rebuild();
            if !self.fds.known.is_empty() {
                self.fds.socketless_samples = 0;
                return Sockets::Held;
            }
        }
        self.fds.socketless_samples += 1;
        if self.fds.socketless_samples % SOCKETLESS_FULL_WALK_EVERY == 0 {
            // The normal path: the dumps, and the full walk now due.
            self.fds.since_full = FULL_WALK_EVERY;
            return Sockets::Held;
        }
        if self.fds.socketless_samples % FULL_WALK_EVERY == 0 {
            return Sockets::Recheck;
        }
        Sockets::NoneHeld
    }

    /// Drops the pids that left the tree and walks those that joined it (or could not be
    /// walked before). Returns whether the cache changed.
    fn sync_tree(&mut self, tree: &[Pid], unreadable: &mut Vec<Pid>) -> bool {
        let before = self.fds.pids.len();
        self.fds.pids.retain(|pid, _| tree.contains(pid));
        let mut changed = self.fds.pids.len() != before;
        self.fds.walked_now.clear();
        for &pid in tree {
            if !self.fds.pids.contains_key(&pid) {
                changed = true;
                self.walk(pid, unreadable);
                self.fds.walked_now.push(pid);
            }
        }
        changed
    }

    /// Re-walks every pid of the tree (a pid gone since is dropped).
    fn walk_all(&mut self, tree: &[Pid], unreadable: &mut Vec<Pid>) {
        self.fds.since_full = 0;
        self.fds.pids.clear();
        for &pid in tree {
            self.walk(pid, unreadable);
        }
    }

    /// Walks one pid into the cache. A pid that vanished or could not be read gets no
    /// entry, so the next sample tries again (a failed open is cheap).
    fn walk(&mut self, pid: Pid, unreadable: &mut Vec<Pid>) {
        let mut inodes = Vec::new();
        match socket_inodes(pid, &mut inodes) {
            Ok(()) => {
                self.fds.pids.insert(pid, inodes);
            }
            Err(err) => {
                if !vanished(&err) {
                    unreadable.push(pid);
                }
            }
        }
    }
}

impl FdCache {
    /// Recomputes `known` from `pids`.
    fn rebuild(&mut self) {
        self.known.clear();
        self.known.extend(self.pids.values().flatten().copied());
    }

    /// After a full walk (with `known` rebuilt): the inodes that mattered in this sample
    /// and are still not the tree's become suspect, or foreign if they already were
    /// suspect or foreign; everything else is forgotten.
    fn classify(&mut self, relevant: impl Iterator<Item = u32>) {
        self.rebuild();
        let (mut foreign, mut suspect) = (HashSet::new(), HashSet::new());
        for inode in relevant {
            if self.known.contains(&inode) {
                continue;
            }
            if self.foreign.contains(&inode) || self.suspect.contains(&inode) {
                foreign.insert(inode);
            } else {
                suspect.insert(inode);
            }
        }
        self.foreign = foreign;
        self.suspect = suspect;
    }
}

/// Adds the inodes of `pid`'s sockets (`/proc/<pid>/fd/N -> socket:[inode]`) to `out`.
///
/// The kernel's work per fd (the listing and the link) is nearly all of the cost: a
/// `readlinkat` relative to an open `/proc/<pid>/fd`, without a path or a `String` per
/// fd, measured the same (1,154 vs 1,149 µs for 1,002 fds), so this stays plain.
fn socket_inodes(pid: Pid, out: &mut Vec<u32>) -> io::Result<()> {
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let link = match entry.and_then(|e| fs::read_link(e.path())) {
            Ok(link) => link,
            // The fd was closed between the listing and the readlink: normal.
            Err(err) if vanished(&err) => continue,
            Err(err) => return Err(err),
        };
        let inode = link
            .to_str()
            .and_then(|l| l.strip_prefix("socket:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse().ok());
        if let Some(inode) = inode {
            out.push(inode);
        }
    }
    Ok(())
}

/// An inet_diag bytecode program (`linux/inet_diag.h`) that accepts a socket whose local
/// port is one of `ports`, into `out`.
///
/// The kernel runs it op by op: an op jumps `yes` bytes ahead when its test holds, else
/// `no` bytes; landing exactly on the end accepts, jumping past it rejects. Its audit
/// (`inet_diag_bc_audit`) wants the `yes` chain to run straight through every op, and
/// every `no` to land on an op of that chain or at most 4 bytes past the end. Per port:
///
/// ```text
/// S_GE {yes 8, no → next port}  {port}    local port >= p (the port rides in the next op's `no`)
/// S_LE {yes 8, no → next port}  {port}    local port <= p
/// JMP  {yes 4, no → end}                  accept
/// ```
///
/// and the last port's `no` jumps to end + 4: reject. S_GE/S_LE exist since inet_diag's
/// start; S_EQ would be shorter but needs Linux 4.16, and DESIGN §4 supports 4.6.
fn port_filter(ports: &[u16], out: &mut Vec<u8>) {
    const BLOCK: usize = 20;
    out.clear();
    let total = ports.len() * BLOCK;
    let op = |out: &mut Vec<u8>, code: u8, yes: u8, no: usize| {
        out.push(code);
        out.push(yes);
        out.extend_from_slice(&(no as u16).to_ne_bytes());
    };
    for (i, &port) in ports.iter().enumerate() {
        let start = i * BLOCK;
        let reject = if i + 1 == ports.len() { total + 4 } else { start + BLOCK };
        op(out, bc::S_GE, 8, reject - start);
        op(out, bc::NOP, 0, usize::from(port));
        op(out, bc::S_LE, 8, reject - (start + 8));
        op(out, bc::NOP, 0, usize::from(port));
        op(out, bc::JMP, 4, total - (start + 16));
    }
}

/// `enum { INET_DIAG_BC_NOP, … }` of `linux/inet_diag.h`.
mod bc {
    pub const NOP: u8 = 0;
    pub const JMP: u8 = 1;
    pub const S_GE: u8 = 2;
    pub const S_LE: u8 = 3;
    /// `INET_DIAG_REQ_BYTECODE`: the request attribute that carries a program.
    pub const REQ_BYTECODE: u16 = 1;
}

/// A process (or one of its fds) that went away mid-walk: ENOENT, or ESRCH from a
/// process that is exiting.
fn vanished(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

/// What one dump asks for.
#[derive(Debug, Clone, Copy)]
enum DumpKind {
    /// LISTEN sockets, no attributes.
    Listen,
    /// ESTABLISHED sockets with `tcp_info`.
    Established,
}

/// Dumps the TCP sockets of `family` of `kind` (filtered by `bytecode` when it is not
/// empty, see [`port_filter`]), calling `visit` for each; reads to NLMSG_DONE. Returns
/// whether the kernel flagged the dump as interrupted.
fn dump(
    socket: &Socket,
    buf: &mut [u8],
    seq: u32,
    family: u8,
    kind: DumpKind,
    bytecode: &[u8],
    mut visit: impl FnMut(&InetResponse),
) -> io::Result<bool> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: match kind {
                DumpKind::Listen => ExtensionFlags::empty(),
                DumpKind::Established => ExtensionFlags::INFO,
            },
            states: match kind {
                DumpKind::Listen => StateFlags::LISTEN,
                DumpKind::Established => StateFlags::ESTABLISHED,
            },
            socket_id,
        })
        .into(),
    );
    request.finalize();
    // `serialize` panics on a short buffer; the request is 72 bytes, the buffer 32 KiB
    // (and a bytecode at most 4 + 20 × MAX_FILTER_PORTS).
    let mut len = request.buffer_len();
    request.serialize(&mut buf[..len]);
    if !bytecode.is_empty() {
        // netlink-packet-sock-diag has no request attributes: append the rtattr
        // {len, type} + program by hand and fix the netlink header's length (its first
        // u32). Both are 4-byte multiples, so no padding.
        let attr_len = 4 + bytecode.len();
        buf[len..len + 2].copy_from_slice(&(attr_len as u16).to_ne_bytes());
        buf[len + 2..len + 4].copy_from_slice(&bc::REQ_BYTECODE.to_ne_bytes());
        buf[len + 4..len + attr_len].copy_from_slice(bytecode);
        len += attr_len;
        buf[..4].copy_from_slice(&(len as u32).to_ne_bytes());
    }
    socket.send(&buf[..len], 0)?;

    let mut interrupted = false;
    loop {
        // MSG_TRUNC makes recv return the datagram's real length, so a truncated one is
        // an error here instead of a silently short count.
        let n = match socket.recv(&mut &mut buf[..], libc::MSG_TRUNC) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "sock_diag: a {n}-byte datagram does not fit the {}-byte buffer",
                buf.len()
            )));
        }
        let mut offset = 0;
        while offset < n {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..n])
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {err}")))?;
            let len = message.header.length as usize;
            if len == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "sock_diag: a zero-length netlink message",
                ));
            }
            // Messages are NLMSG_ALIGN'ed (4 bytes) within a datagram.
            offset += (len + 3) & !3;
            if message.header.sequence_number != seq {
                continue;
            }
            interrupted |= message.header.flags & NLM_F_DUMP_INTR != 0;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(interrupted),
                NetlinkPayload::Error(err) if err.code.is_some() => return Err(err.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => visit(&response),
                // An ACK (an error message with code 0), NOOP, or anything else.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
