//! Inbound connections of the child's tree, read from the kernel (DESIGN §4, §6, §7;
//! DEPS §11): how many there are (`graceful_shutdown_active_connections`) and how many
//! carry a request that has not been answered (`gsup_inflight_connections`, the drain's
//! wait condition).
//!
//! One [`ConnectionCounter::count`] is one sample:
//!
//! 1. the tree's socket inodes, from the `socket:[N]` links in `/proc/<pid>/fd` (proc(5));
//! 2. one sock_diag dump (sock_diag(7)) per address family of the TCP sockets in LISTEN
//!    and ESTABLISHED, with `INET_DIAG_INFO` (the kernel's `struct tcp_info`);
//! 3. the listening ports are the ports of the tree's LISTEN sockets; an inbound
//!    connection is an ESTABLISHED socket of the tree whose local port is one of them, so
//!    the child's outbound pools (databases, upstreams) never count;
//! 4. in flight per DESIGN §4 ([`in_flight`]).
//!
//! The kernel filters by state only; ports and inodes are matched here (DEPS §11: no
//! bytecode filter). Netlink sees gsup's network namespace only: a child in another netns
//! has no inbound connections as far as this module can tell.
//!
//! This module only reads /proc and asks the kernel; it never touches a socket or a
//! process of the child. The supervisor owns the timer that calls it (every `interval`,
//! every 100 ms during `drain`).
//!
//! Crates: `netlink-sys` for the socket and `netlink-packet-sock-diag` for the request
//! and the response header. `tcp_info` comes as raw bytes (no `rich_nlas` feature, which
//! would parse the whole 232-byte struct into ~60 fields per socket); [`TcpTimes::parse`]
//! reads the four fields DESIGN §4 needs at the offsets of `linux/tcp.h`.
#![allow(dead_code)] // wired by the drain phase and the monitor

use std::collections::HashSet;
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
    /// Those of them in flight: `gsup_inflight_connections`, what the drain waits for.
    pub inflight: u64,
    /// Ports the tree listens on (any address, either family), ascending, no repeats.
    pub listening_ports: Vec<u16>,
    /// Connections the kernel completed but the tree has not `accept`ed yet (the sum of
    /// its listeners' accept queues). They have no inode yet, so they are not in
    /// `active`; reported because a busy server's backlog is worth seeing.
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

/// Counts the tree's inbound connections; one for the whole run.
pub struct ConnectionCounter {
    /// NETLINK_SOCK_DIAG socket connected to the kernel; requests go out one at a time
    /// and every reply is read to NLMSG_DONE before the next request.
    socket: Socket,
    /// Receive buffer for one dump datagram, reused across samples (also holds the
    /// outgoing request, which is sent before any reply is read).
    buf: Vec<u8>,
    /// Sequence number of the last request: replies with another one are leftovers of a
    /// dump abandoned by an error and are skipped.
    seq: u32,
    /// The tree's socket inodes, refilled by every sample (kept for its allocation).
    inodes: HashSet<u64>,
    /// ESTABLISHED sockets of the tree seen in the dumps, before the listening ports of
    /// both families are known (the v6 dump may name a port the v4 dump's sockets use).
    established: Vec<Inbound>,
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
            buf: vec![0; BUFFER_LEN],
            seq: 0,
            inodes: HashSet::new(),
            established: Vec::new(),
        })
    }

    /// One sample of the inbound connections of `tree` (the pids of the child's tree,
    /// e.g. from `procfs::descendants`). A pid that has exited is skipped. Errors are
    /// netlink failures only; a failed sample leaves the counter usable.
    pub fn count(&mut self, tree: &[Pid]) -> io::Result<Connections> {
        let mut out = Connections::default();
        self.inodes.clear();
        for &pid in tree {
            if let Err(err) = socket_inodes(pid, &mut self.inodes) {
                if !vanished(&err) {
                    out.unreadable.push(pid);
                }
            }
        }
        out.sockets = self.inodes.len();
        self.established.clear();
        if self.inodes.is_empty() {
            // Nothing in the tree has a socket: the dumps could not match anything.
            return Ok(out);
        }

        for family in [AF_INET, AF_INET6] {
            self.seq = self.seq.wrapping_add(1);
            let (inodes, established, listening, queued) = (
                &self.inodes,
                &mut self.established,
                &mut out.listening_ports,
                &mut out.queued,
            );
            let interrupted = dump(&self.socket, &mut self.buf, self.seq, family, |r| {
                let h = &r.header;
                if !inodes.contains(&u64::from(h.inode)) {
                    return;
                }
                let id = &h.socket_id;
                match h.state {
                    // For a listener the kernel reports its accept-queue length here.
                    TCP_LISTEN => {
                        listening.push(id.source_port);
                        *queued += u64::from(h.recv_queue);
                    }
                    TCP_ESTABLISHED => {
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
                    }
                    _ => {}
                }
            })?;
            out.interrupted |= interrupted;
        }

        out.listening_ports.sort_unstable();
        out.listening_ports.dedup();
        let ports = &out.listening_ports;
        out.connections.extend(
            self.established
                .drain(..)
                .filter(|c| ports.binary_search(&c.local.port()).is_ok()),
        );
        out.active = out.connections.len() as u64;
        out.inflight = out.connections.iter().filter(|c| c.in_flight).count() as u64;
        Ok(out)
    }
}

/// Adds the inodes of `pid`'s sockets (`/proc/<pid>/fd/N -> socket:[inode]`) to `out`.
fn socket_inodes(pid: Pid, out: &mut HashSet<u64>) -> io::Result<()> {
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
            out.insert(inode);
        }
    }
    Ok(())
}

/// A process (or one of its fds) that went away mid-walk: ENOENT, or ESRCH from a
/// process that is exiting.
fn vanished(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

/// Dumps the TCP sockets of `family` in LISTEN or ESTABLISHED, with `tcp_info`, calling
/// `visit` for each; reads to NLMSG_DONE. Returns whether the kernel flagged the dump as
/// interrupted.
fn dump(
    socket: &Socket,
    buf: &mut [u8],
    seq: u32,
    family: u8,
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
            extensions: ExtensionFlags::INFO,
            states: StateFlags::LISTEN | StateFlags::ESTABLISHED,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    // `serialize` panics on a short buffer; the request is 72 bytes, the buffer 32 KiB.
    let len = request.buffer_len();
    request.serialize(&mut buf[..len]);
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
