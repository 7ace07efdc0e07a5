//! The process tree below gsup, read from /proc.
//!
//! gsup is PID 1 or a child subreaper, so every descendant of the child — including those
//! whose parents died — is reachable from gsup by parent links. Walking
//! `/proc/<pid>/task/<tid>/children` from gsup finds them without scanning all of /proc.
//! A process that exits mid-walk is normal: its files are gone and it is skipped.

use std::collections::HashSet;
use std::fs;

use super::state::Pid;

/// Every live descendant of `root` (not `root` itself), skipping the subtrees rooted at
/// `exclude` (hooks and probes, which have their own lifetimes).
pub fn descendants(root: Pid, exclude: &HashSet<Pid>) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut queue = vec![root];
    let mut seen = HashSet::new();
    while let Some(pid) = queue.pop() {
        for child in children(pid) {
            if exclude.contains(&child) || !seen.insert(child) {
                continue;
            }
            found.push(child);
            queue.push(child);
        }
    }
    found
}

/// Children of every thread of `pid` (a child belongs to the thread that forked it).
fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let path = task.path().join("children");
        match fs::read_to_string(&path) {
            Ok(text) => pids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<Pid>().ok()),
            ),
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound
                    && path.parent().is_some_and(|p| p.exists()) =>
            {
                // Kernel without CONFIG_PROC_CHILDREN: fall back to a full scan.
                return scan_children(pid);
            }
            Err(_) => {}
        }
    }
    pids
}

/// The slow path: every process whose parent is `parent`, from a full /proc scan.
fn scan_children(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// The parent pid from `/proc/<pid>/stat` (field 4, after the last `)`, since the command
/// name may itself contain spaces and parentheses).
pub fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_self_is_our_parent() {
        let me = std::process::id() as Pid;
        assert_eq!(parent_of(me), Some(nix::unistd::getppid().as_raw()));
    }

    #[test]
    fn finds_a_spawned_child_and_skips_excluded() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as Pid;
        let me = std::process::id() as Pid;
        assert!(descendants(me, &HashSet::new()).contains(&pid));
        assert!(!descendants(me, &HashSet::from([pid])).contains(&pid));
        assert!(scan_children(me).contains(&pid));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        #[allow(clippy::disallowed_methods)] // a unit test owns this child; no reaper runs here
        let _ = child.wait();
    }
}
