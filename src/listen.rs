//! Listening sockets gsup binds (`[[listen]]`, `--listen`) or inherits from systemd, held
//! open across child restarts (the kernel queues connections while no child accepts) and
//! handed to every child as fds 3.. with `LISTEN_FDS`/`LISTEN_FDNAMES` (DESIGN §8).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, sockopt};
use thiserror::Error;

use crate::config::{ListenAddress, ListenConfig};
use crate::os;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("[[listen]] {name} ({address}): {source}")]
    Bind {
        name: String,
        address: String,
        source: std::io::Error,
    },
    #[error("more than {max} listening sockets")]
    TooMany { max: usize },
}

/// The sockets and their names, in hand-over order: systemd's first, then `[[listen]]`.
#[derive(Debug, Default)]
pub struct Sockets {
    pub fds: Vec<OwnedFd>,
    pub names: Vec<String>,
}

impl Sockets {
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// `LISTEN_FDS` and `LISTEN_FDNAMES` for the child.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LISTEN_FDS".into(), self.fds.len().to_string()),
            ("LISTEN_FDNAMES".into(), self.names.join(":")),
        ]
    }

    /// The raw fds, for the child's side of `os::spawn`.
    pub fn raw(&self) -> ([i32; os::MAX_LISTEN_FDS], usize) {
        let mut raw = [0; os::MAX_LISTEN_FDS];
        for (slot, fd) in raw.iter_mut().zip(&self.fds) {
            *slot = fd.as_raw_fd();
        }
        (raw, self.fds.len())
    }
}

/// Adopts systemd's sockets (`LISTEN_PID` = gsup's pid; others are ignored) and binds the
/// configured ones.
pub fn open(config: &[ListenConfig], env: &dyn Fn(&str) -> Option<String>) -> Result<Sockets, ListenError> {
    let mut sockets = Sockets::default();
    let own = std::process::id().to_string();
    if env("LISTEN_PID").as_deref() == Some(own.as_str()) {
        let count: usize = env("LISTEN_FDS").and_then(|n| n.parse().ok()).unwrap_or(0);
        let names: Vec<String> = env("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(String::from).collect())
            .unwrap_or_default();
        for index in 0..count {
            let fd = 3 + index as i32;
            let name = names.get(index).cloned().unwrap_or_else(|| "unknown".into());
            let owned = os::adopt_inherited_fd(fd).map_err(|source| ListenError::Bind {
                name: name.clone(),
                address: format!("inherited fd {fd}"),
                source,
            })?;
            sockets.fds.push(owned);
            sockets.names.push(name);
        }
    }
    for entry in config {
        let failed = |source: std::io::Error| ListenError::Bind {
            name: entry.name.clone(),
            address: describe(&entry.address),
            source,
        };
        let fd = bind(entry).map_err(failed)?;
        sockets.fds.push(fd);
        sockets.names.push(entry.name.clone());
    }
    if sockets.fds.len() > os::MAX_LISTEN_FDS {
        return Err(ListenError::TooMany {
            max: os::MAX_LISTEN_FDS,
        });
    }
    Ok(sockets)
}

fn describe(address: &ListenAddress) -> String {
    match address {
        ListenAddress::Tcp(addr) => addr.to_string(),
        ListenAddress::Unix(path) => format!("unix:{}", path.display()),
    }
}

fn bind(entry: &ListenConfig) -> std::io::Result<OwnedFd> {
    let backlog = Backlog::new(entry.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
    let flags = SockFlag::SOCK_CLOEXEC;
    match &entry.address {
        ListenAddress::Tcp(addr) => {
            let family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let fd = socket::socket(family, SockType::Stream, flags, None)?;
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            if let (SocketAddr::V6(_), Some(v6only)) = (addr, entry.v6only) {
                socket::setsockopt(&fd, sockopt::Ipv6V6Only, &v6only)?;
            }
            match addr {
                SocketAddr::V4(v4) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(*v4))?,
                SocketAddr::V6(v6) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6))?,
            }
            socket::listen(&fd, backlog)?;
            Ok(fd)
        }
        ListenAddress::Unix(path) => {
            // A stale socket file from an earlier run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            let fd = socket::socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
            socket::bind(fd.as_raw_fd(), &UnixAddr::new(path.as_path())?)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))?;
            socket::listen(&fd, backlog)?;
            Ok(fd)
        }
    }
}
