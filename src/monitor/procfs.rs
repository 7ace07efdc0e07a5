//! The process tree below gsup, read from /proc (proc(5)): who is in it, and what each
//! process uses (RSS, CPU, threads, open fds).
//!
//! gsup is PID 1 or a child subreaper, so every descendant of the child — including those
//! whose parents died — is reachable from the child or from gsup by parent links. Walking
//! `/proc/<pid>/task/<tid>/children` finds them without scanning all of /proc, which keeps
//! a sample well under 1 ms of CPU for 50 processes (DESIGN §7, DEPS §10). Without
//! CONFIG_PROC_CHILDREN the walk falls back to one full /proc scan per sample.
//!
//! A process that exits mid-walk is normal: its files are gone and it is skipped. This
//! module only reads /proc; it never signals, waits for or otherwise touches a process.
//!
//! Use: one [`Sampler`] for the whole run (it holds the previous sample, for
//! `cpu_percent`, and the monotonic `cpu_seconds_total` across generations); every
//! `interval`, `sampler.sample(&[Root::tree(child), Root::below(gsup)], &hooks_and_probes)`
//! and, for `GET /process`, `sampler.sample_self(&hooks_and_probes)`.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::timefmt::rfc3339_millis;

pub type Pid = i32;

/// The hasher of the sampler's own maps, looked up several times per process per tick:
/// std's SipHash was ~15 % of a tick's instructions. Keys are pids the kernel chose, so
/// no flooding resistance is needed beyond foldhash's per-map seed.
type Fast = foldhash::fast::RandomState;

/// Where a walk starts. The child is a `tree` root (itself and every descendant); gsup is
/// a `below` root, for the orphans re-parented to it, without gsup itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    pub pid: Pid,
    /// Whether `pid` itself is part of the sample, or only its descendants.
    pub include_self: bool,
}

impl Root {
    /// `pid` and every descendant of it.
    pub fn tree(pid: Pid) -> Self {
        Root {
            pid,
            include_self: true,
        }
    }

    /// Every descendant of `pid`, not `pid` itself.
    pub fn below(pid: Pid) -> Self {
        Root {
            pid,
            include_self: false,
        }
    }
}

/// One process of a sample: one ENTRY of `GET /process` (DESIGN §5).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    pub pid: Pid,
    pub ppid: Pid,
    pub pgid: Pid,
    /// argv joined by spaces; `[comm]` when there is no argv (zombies, kernel threads).
    pub command: String,
    /// Boot time (`btime`) plus the start time in ticks: whole-second precision at best.
    pub started_at: SystemTime,
    pub rss_bytes: u64,
    /// utime + stime of this process itself (not of its reaped children).
    pub cpu_seconds: f64,
    /// Percent of one core since the previous sample of the same process (same pid and
    /// start time); 0 on its first sample.
    pub cpu_percent: f64,
    pub threads: u64,
    pub fds: u64,
    /// Direct children that are in the same sample, ascending.
    pub children: Vec<Pid>,
}

impl ProcessInfo {
    /// The ENTRY object of `GET /process`, with exactly DESIGN §5's keys. `now` gives
    /// `uptime_seconds`; a clock stepped backwards clamps it at 0 rather than going
    /// negative.
    pub fn to_json(&self, now: SystemTime) -> Value {
        let uptime = now
            .duration_since(self.started_at)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        json!({
            "pid": self.pid,
            "ppid": self.ppid,
            "pgid": self.pgid,
            "command": self.command,
            "started_at": rfc3339_millis(self.started_at),
            "uptime_seconds": uptime,
            "rss_bytes": self.rss_bytes,
            "cpu_percent": self.cpu_percent,
            "threads": self.threads,
            "fds": self.fds,
            "children": self.children,
        })
    }
}

/// Sums over a sample, for the `gsup_child_*` gauges (DESIGN §6) and the thresholds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub rss_bytes: u64,
    pub threads: u64,
    pub fds: u64,
    pub processes: u64,
    /// Sum of the processes' `cpu_percent`: 250 means two and a half cores.
    pub cpu_percent: f64,
}

/// One monitor reading of the tree.
#[derive(Debug, Clone)]
pub struct TreeSample {
    /// Parents before their children (a depth-first walk from each root).
    pub processes: Vec<ProcessInfo>,
    pub totals: Totals,
    /// Σ utime + stime + cutime + cstime of the live tree now. Not monotonic: it drops
    /// when gsup reaps an orphan or the child, whose time then leaves the tree. Only the
    /// tests read it, to check `cpu_seconds_total` against it.
    #[cfg(test)]
    pub cpu_seconds_live: f64,
    /// `gsup_child_cpu_seconds_total` (DESIGN §6): CPU used by every process this sampler
    /// has seen, over every generation, monotonic. See [`Sampler::sample`] for what it
    /// can miss. The caller keeps one `Sampler` for the whole run and exports this.
    pub cpu_seconds_total: f64,
}

/// What the previous sample knew of a process: for `cpu_percent`, the monotonic CPU
/// counter, and to skip re-reading `cmdline` every sample.
#[derive(Debug)]
struct Known {
    starttime: u64,
    ppid: Pid,
    /// utime + stime, in ticks.
    own_ticks: u64,
    /// utime + stime + cutime + cstime, in ticks.
    all_ticks: u64,
    comm: String,
    arg_start: u64,
    command: String,
    /// Whether `command` came from a non-empty argv. A `[comm]` fallback is not reused:
    /// during an exec the new comm shows before the new argv does.
    from_argv: bool,
    /// Consecutive samples the walk missed this live process (proc(5): `children` can
    /// miss a process that forks or exits meanwhile); dropped after `MAX_MISSES`.
    misses: u8,
    /// Whether the previous sample also knew it (so a vanished child of it was reaped by
    /// a process whose `cutime` we follow).
    continuing: bool,
}

/// After this many samples missing from the walk, a live process is forgotten (it left
/// the tree, e.g. re-parented to init when gsup could not become a subreaper).
const MAX_MISSES: u8 = 3;

/// Samples the tree, keeping the buffers and the previous sample between calls. One per
/// run: it holds the monotonic CPU counter.
pub struct Sampler {
    reader: Reader,
    clk_tck: f64,
    page_size: u64,
    boot_time: SystemTime,
    previous: HashMap<Pid, Known, Fast>,
    /// Becomes `previous` at the end of a sample; kept to reuse its allocation.
    current: HashMap<Pid, Known, Fast>,
    previous_at: Option<Instant>,
    /// `cpu_seconds_total` in ticks, exact.
    total_ticks: u64,
    /// A negative delta carried to the next sample (see the end of `sample`).
    debt_ticks: i64,
    /// gsup's own previous reading for its `cpu_percent`: (when, starttime, own ticks).
    own_previous: Option<(Instant, u64, u64)>,
    queue: Vec<Pid>,
    seen: HashSet<Pid, Fast>,
    children: Vec<Pid>,
    /// gsup's pid (no `getpid` per sample).
    own_pid: Pid,
    /// gsup's children as the last `sample` listed them (all threads', unfiltered), for
    /// the `sample_self` right after it: listing `/proc/self/task` and each thread's
    /// `children` twice per tick cost 14 system calls. Taken by that call.
    own_children: Option<Vec<Pid>>,
    /// gsup's own command line, kept while its `stat` says it is the same (see `Known`).
    own_command: Option<OwnCommand>,
}

/// gsup's command, kept across samples like a tree process's (`Known`): reading and
/// redacting its `cmdline` every tick was a tenth of a tick's instructions.
struct OwnCommand {
    starttime: u64,
    comm: String,
    arg_start: u64,
    command: String,
}

impl Sampler {
    /// Reads the boot time and the kernel's tick and page sizes once.
    pub fn new() -> io::Result<Self> {
        let boot_time = boot_time()?;
        let clk_tck = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(ticks)) if ticks > 0 => ticks as f64,
            _ => 100.0, // USER_HZ on every Linux architecture
        };
        let page_size = match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
            Ok(Some(size)) if size > 0 => size as u64,
            _ => 4096,
        };
        Ok(Sampler {
            reader: Reader::new(),
            clk_tck,
            page_size,
            boot_time,
            previous: HashMap::default(),
            current: HashMap::default(),
            previous_at: None,
            total_ticks: 0,
            debt_ticks: 0,
            own_previous: None,
            queue: Vec::new(),
            seen: HashSet::default(),
            children: Vec::new(),
            own_pid: nix::unistd::getpid().as_raw(),
            own_children: None,
            own_command: None,
        })
    }

    /// Every process under `roots` (see [`Root`]), each once, skipping the subtrees rooted
    /// at `exclude` (hooks and probes, which have their own lifetimes). Pass the child as
    /// `Root::tree(child)` and gsup as `Root::below(gsup)`.
    ///
    /// `cpu_seconds_total` grows by each process's CPU since the previous sample (all of it
    /// for a process seen for the first time), and by the `cutime`/`cstime` its live
    /// parents gain when they reap it. It misses what a process used between its last
    /// sample and its exit when gsup reaps it (an orphan, the child itself: at most one
    /// interval each), and the time of children reaped by a parent that ignores SIGCHLD
    /// (the kernel then adds nothing to `cutime`).
    pub fn sample(&mut self, roots: &[Root], exclude: &HashSet<Pid>) -> TreeSample {
        let now = Instant::now();
        let elapsed = self
            .previous_at
            .map(|at| now.saturating_duration_since(at).as_secs_f64());
        self.reader.begin_sample();
        self.seen.clear();
        self.current.clear();
        let mut processes = Vec::new();
        // Signed: a vanished process's time subtracted where its parent's cutime gains it.
        let mut delta_ticks: i64 = 0;
        #[cfg(test)]
        let mut live_ticks: u64 = 0;

        for root in roots {
            if exclude.contains(&root.pid) {
                continue;
            }
            self.queue.clear();
            if root.include_self {
                if self.seen.insert(root.pid) {
                    self.queue.push(root.pid);
                }
            } else {
                self.push_children(root.pid, false, exclude);
                if root.pid == self.own_pid {
                    let mut own = self.own_children.take().unwrap_or_default();
                    own.clear();
                    own.extend_from_slice(&self.children);
                    self.own_children = Some(own);
                }
            }
            while let Some(pid) = self.queue.pop() {
                let Some(stat) = self.reader.stat(pid) else {
                    continue; // exited since its parent listed it
                };
                let mut known = self.previous.remove(&pid).filter(|k| k.starttime == stat.starttime);
                let (command, from_argv) = match &mut known {
                    Some(k)
                        if k.from_argv
                            && k.comm == stat.comm
                            && k.arg_start == stat.arg_start
                            && stat.arg_start != 0
                            && stat.state != b'Z' =>
                    {
                        (std::mem::take(&mut k.command), true)
                    }
                    // New, exec'd since (comm changed: argv may have changed too), or
                    // caught mid-exec last time (argv not yet set up).
                    _ => self.reader.command(pid, &stat),
                };
                let own_ticks = stat.utime + stat.stime;
                let all_ticks = own_ticks + stat.cutime + stat.cstime;
                let cpu_percent = match (&known, elapsed) {
                    (Some(k), Some(secs)) if secs > 0.0 => {
                        own_ticks.saturating_sub(k.own_ticks) as f64 / self.clk_tck / secs * 100.0
                    }
                    _ => 0.0,
                };
                delta_ticks += match &known {
                    Some(k) => all_ticks.saturating_sub(k.all_ticks) as i64,
                    None => all_ticks as i64,
                };
                #[cfg(test)]
                {
                    live_ticks += all_ticks;
                }
                self.push_children(pid, stat.threads == 1, exclude);
                processes.push(ProcessInfo {
                    pid,
                    ppid: stat.ppid,
                    pgid: stat.pgid,
                    command: command.clone(),
                    started_at: self.boot_time + Duration::from_secs_f64(stat.starttime as f64 / self.clk_tck),
                    rss_bytes: stat.rss_pages.saturating_mul(self.page_size),
                    cpu_seconds: own_ticks as f64 / self.clk_tck,
                    cpu_percent,
                    threads: stat.threads,
                    fds: self.reader.fds(pid),
                    children: Vec::new(),
                });
                self.current.insert(
                    pid,
                    Known {
                        starttime: stat.starttime,
                        ppid: stat.ppid,
                        own_ticks,
                        all_ticks,
                        arg_start: stat.arg_start,
                        comm: stat.comm,
                        command,
                        from_argv,
                        misses: 0,
                        continuing: known.is_some(),
                    },
                );
            }
        }

        // What is left of `previous` vanished from the walk.
        for (pid, mut known) in self.previous.drain() {
            match self.reader.stat(pid) {
                // Still alive: the walk missed it. Keep it so that it is not counted
                // again from zero when it shows up next time.
                Some(stat) if stat.starttime == known.starttime && known.misses < MAX_MISSES => {
                    known.misses += 1;
                    known.continuing = false;
                    self.current.insert(pid, known);
                }
                Some(stat) if stat.starttime == known.starttime => {} // left the tree
                _ => {
                    // Exited. A live parent that reaped it gains its time in cutime/cstime,
                    // already counted above: take it back out once.
                    let reaped_by_tree = self
                        .current
                        .get(&known.ppid)
                        .is_some_and(|parent| parent.continuing && parent.misses == 0);
                    if reaped_by_tree {
                        delta_ticks -= known.all_ticks as i64;
                    }
                }
            }
        }
        std::mem::swap(&mut self.previous, &mut self.current);
        self.previous_at = Some(now);
        // Negative when a parent reaped a child between the read of its own stat and the
        // listing of its children: the child's time leaves the walk now and shows in the
        // parent's cutime only next time. Carry that to the next sample (once), or the
        // time is counted twice (seen in CI under load). Negative for good only when a
        // parent ignoring SIGCHLD let a child's time go uncounted: then the debt lapses.
        let had_debt = self.debt_ticks != 0;
        let delta = delta_ticks + std::mem::take(&mut self.debt_ticks);
        if delta >= 0 {
            self.total_ticks += delta as u64;
        } else if !had_debt {
            self.debt_ticks = delta;
        }

        link_children(&mut processes);
        let totals = Totals {
            rss_bytes: processes.iter().map(|p| p.rss_bytes).sum(),
            threads: processes.iter().map(|p| p.threads).sum(),
            fds: processes.iter().map(|p| p.fds).sum(),
            processes: processes.len() as u64,
            cpu_percent: processes.iter().map(|p| p.cpu_percent).sum(),
        };
        TreeSample {
            processes,
            totals,
            #[cfg(test)]
            cpu_seconds_live: live_ticks as f64 / self.clk_tck,
            cpu_seconds_total: self.total_ticks as f64 / self.clk_tck,
        }
    }

    /// gsup's own ENTRY (`"gsup"` of `GET /process`): `children` are its direct children
    /// minus `exclude`; `cpu_percent` is since the previous call. None only when
    /// `/proc/self` cannot be read (no /proc mounted).
    pub fn sample_self(&mut self, exclude: &HashSet<Pid>) -> Option<ProcessInfo> {
        let now = Instant::now();
        let pid = self.own_pid;
        let listed = self.own_children.take();
        let stat = self.reader.stat(pid)?;
        let own_ticks = stat.utime + stat.stime;
        let cpu_percent = match self.own_previous {
            Some((at, starttime, ticks)) if starttime == stat.starttime => {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    own_ticks.saturating_sub(ticks) as f64 / self.clk_tck / secs * 100.0
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        self.own_previous = Some((now, stat.starttime, own_ticks));
        let mut children = match listed {
            Some(listed) => listed,
            None => {
                self.reader.begin_pass();
                let mut listed = Vec::new();
                self.reader.children(pid, false, &mut listed);
                listed
            }
        };
        children.retain(|c| !exclude.contains(c));
        children.sort_unstable();
        children.dedup();
        let command = match self.own_command.take() {
            Some(own)
                if own.starttime == stat.starttime
                    && own.comm == stat.comm
                    && own.arg_start == stat.arg_start
                    && stat.arg_start != 0 =>
            {
                own
            }
            _ => {
                let (command, from_argv) = self.reader.command(pid, &stat);
                OwnCommand {
                    starttime: stat.starttime,
                    // A `[comm]` fallback is not kept (see `Known::from_argv`).
                    arg_start: if from_argv { stat.arg_start } else { 0 },
                    comm: stat.comm.clone(),
                    command,
                }
            }
        };
        let entry_command = command.command.clone();
        self.own_command = Some(command);
        Some(ProcessInfo {
            pid,
            ppid: stat.ppid,
            pgid: stat.pgid,
            command: entry_command,
            started_at: self.boot_time + Duration::from_secs_f64(stat.starttime as f64 / self.clk_tck),
            rss_bytes: stat.rss_pages.saturating_mul(self.page_size),
            cpu_seconds: own_ticks as f64 / self.clk_tck,
            cpu_percent,
            threads: stat.threads,
            fds: self.reader.fds(pid),
            children,
        })
    }

    /// Queues the not yet seen, not excluded children of `pid`.
    fn push_children(&mut self, pid: Pid, single_thread: bool, exclude: &HashSet<Pid>) {
        self.children.clear();
        self.reader.children(pid, single_thread, &mut self.children);
        // Reversed, so that the depth-first walk pops them in the kernel's order.
        for &child in self.children.iter().rev() {
            if !exclude.contains(&child) && self.seen.insert(child) {
                self.queue.push(child);
            }
        }
    }
}

/// Fills each process's `children` from the others' `ppid`, so the lists hold exactly the
/// processes of this sample.
fn link_children(processes: &mut [ProcessInfo]) {
    let index: HashMap<Pid, usize, Fast> = processes.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    for i in 0..processes.len() {
        if let Some(&parent) = index.get(&processes[i].ppid) {
            let pid = processes[i].pid;
            processes[parent].children.push(pid);
        }
    }
    for process in processes.iter_mut() {
        process.children.sort_unstable();
    }
}

/// Every live descendant of `root` (not `root` itself), skipping the subtrees rooted at
/// `exclude`: what the supervisor signals when it kills the tree.
pub fn descendants(root: Pid, exclude: &HashSet<Pid>) -> Vec<Pid> {
    let mut reader = Reader::new();
    reader.begin_pass();
    let mut found = Vec::new();
    let mut queue = vec![root];
    let mut seen = HashSet::new();
    let mut children = Vec::new();
    while let Some(pid) = queue.pop() {
        children.clear();
        reader.children(pid, false, &mut children);
        for &child in &children {
            if exclude.contains(&child) || !seen.insert(child) {
                continue;
            }
            found.push(child);
            queue.push(child);
        }
    }
    found
}

/// Whether a descendant of `root` is in process group `pgid`. Once a group is empty its
/// number may be reused by an unrelated process, so a late `killpg` must ask this first.
pub fn group_in_tree(root: Pid, pgid: Pid, exclude: &HashSet<Pid>) -> bool {
    let mut reader = Reader::new();
    descendants(root, exclude)
        .into_iter()
        .any(|pid| reader.stat(pid).is_some_and(|stat| stat.pgid == pgid))
}

/// The fields of `/proc/<pid>/stat` that a sample needs (proc(5) field numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    comm: String,   // 2
    state: u8,      // 3
    ppid: Pid,      // 4
    pgid: Pid,      // 5
    utime: u64,     // 14
    stime: u64,     // 15
    cutime: u64,    // 16 (signed in the kernel's format; never negative in practice)
    cstime: u64,    // 17
    threads: u64,   // 20
    starttime: u64, // 22
    rss_pages: u64, // 24
    /// Where argv lives in the process's memory (field 48, Linux ≥ 3.5): it moves on every
    /// exec, even one of a program with the same comm (`sh` → `sh -c …`), so a cached
    /// command line is reused only while it stays put. 0 when the kernel hides it.
    arg_start: u64, // 48
}

/// Parses a `stat` line. The fields are counted after the LAST `)`: `comm` may itself hold
/// spaces and parentheses (`(sd-pam) )`), so neither splitting the whole line nor the
/// first `)` is safe. Parsed from bytes (no `str` conversions): the split-and-`str::parse`
/// version cost ~10 % more instructions per tick.
fn parse_stat(line: &[u8]) -> Option<Stat> {
    let open = memchr::memchr(b'(', line)?;
    let close = memchr::memrchr(b')', line)?;
    let comm = String::from_utf8_lossy(line.get(open + 1..close)?).into_owned();
    // The first field is field 3 (state).
    let mut fields = Fields(&line[close + 1..]);
    // Never negative in practice; a garbled value must not wrap to a huge count.
    let unsigned = |field: Option<&[u8]>| -> Option<u64> { parse_i64(field?).map(|n| n.max(0) as u64) };
    let state = *fields.next()?.first()?; // field 3
    let ppid = parse_i64(fields.next()?)? as Pid; // 4
    let pgid = parse_i64(fields.next()?)? as Pid; // 5
    let utime = unsigned(fields.nth(8))?; // 14
    let stime = unsigned(fields.next())?; // 15
    let cutime = unsigned(fields.next())?; // 16
    let cstime = unsigned(fields.next())?; // 17
    let threads = unsigned(fields.nth(2))?; // 20
    let starttime = unsigned(fields.nth(1))?; // 22
    let rss_pages = unsigned(fields.nth(1))?; // 24
    let arg_start = unsigned(fields.nth(23)).unwrap_or(0); // 48
    Some(Stat {
        comm,
        state,
        ppid,
        pgid,
        utime,
        stime,
        cutime,
        cstime,
        threads,
        starttime,
        rss_pages,
        arg_start,
    })
}

/// The space-separated, non-empty fields of a `stat` line.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // Plain searches: fields are a few bytes long, too short for memchr to pay (it
        // made a tick slower, as did memchr_iter over the spaces).
        let line = self.0;
        let start = line.iter().position(|&b| b != b' ')?;
        let field = &line[start..];
        let len = field.iter().position(|&b| b == b' ').unwrap_or(field.len());
        self.0 = &field[len..];
        Some(&field[..len])
    }
}

/// A decimal `i64` as `str::parse` reads it (an optional sign, then at least one ASCII
/// digit, no overflow), straight from bytes.
fn parse_i64(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, field),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n.checked_mul(10)?;
        // Accumulated with the sign, so that i64::MIN parses too.
        n = if negative {
            n.checked_sub(i64::from(digit))?
        } else {
            n.checked_add(i64::from(digit))?
        };
    }
    Some(n)
}

/// At most this many /proc files stay open between samples (three per process: `stat`,
/// `children` and the `fd` directory): a big tree must not run gsup out of file
/// descriptors.
const MAX_KEPT_FILES: usize = 256;

/// A /proc file that stays open across samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kept {
    Stat(Pid),
    Children(Pid, Pid),
    /// `/proc/<pid>/fd`, for its `st_size` (the open fd count).
    Fds(Pid),
}

/// Reads /proc files into one reused path and one reused buffer, so a sample does not
/// allocate per file. The `stat` and `children` files of the processes it walks stay open
/// and are re-read with `pread` at offset 0 (procfs regenerates them): one system call a
/// file instead of open, statx, lseek, two reads and close (DEPS §10).
struct Reader {
    path: String,
    buf: Vec<u8>,
    kept: HashMap<Kept, (File, u64), Fast>,
    /// The walk a kept file was last read in; files not read in a walk are closed.
    pass: u64,
    /// Whether the kernel has `/proc/<pid>/task/<tid>/children` (CONFIG_PROC_CHILDREN).
    children_files: bool,
    /// Without `children` files: parent -> children from one full /proc scan, built at
    /// most once per pass.
    scan: Option<HashMap<Pid, Vec<Pid>>>,
}

impl Reader {
    fn new() -> Self {
        let me = nix::unistd::getpid();
        Reader {
            path: String::with_capacity(64),
            buf: Vec::new(),
            kept: HashMap::default(),
            pass: 0,
            children_files: fs::metadata(format!("/proc/{me}/task/{me}/children")).is_ok(),
            scan: None,
        }
    }

    /// A new walk: the fallback scan, if any, is stale.
    fn begin_pass(&mut self) {
        self.scan = None;
    }

    /// A new tree sample: also closes the files the last one did not read (processes that
    /// left the tree).
    fn begin_sample(&mut self) {
        self.begin_pass();
        let last = self.pass;
        self.kept.retain(|_, (_, read_in)| *read_in == last);
        self.pass += 1;
    }

    fn read(&mut self, path: fmt::Arguments) -> io::Result<&[u8]> {
        let file = self.open(path)?;
        let len = read_whole(&file, &mut self.buf)?;
        Ok(&self.buf[..len])
    }

    fn open(&mut self, path: fmt::Arguments) -> io::Result<File> {
        self.path.clear();
        let _ = self.path.write_fmt(path);
        File::open(&self.path)
    }

    /// Like `read`, through a file kept open across walks. A file of a process that has
    /// exited reads as an error (ESRCH) even if its pid was reused, and is dropped.
    fn read_kept(&mut self, key: Kept, path: fmt::Arguments) -> io::Result<&[u8]> {
        if let Some((file, read_in)) = self.kept.get_mut(&key) {
            if let Ok(len) = read_whole(file, &mut self.buf) {
                *read_in = self.pass;
                return Ok(&self.buf[..len]);
            }
            self.kept.remove(&key);
        }
        let file = self.open(path)?;
        let len = read_whole(&file, &mut self.buf)?;
        if self.kept.len() < MAX_KEPT_FILES {
            self.kept.insert(key, (file, self.pass));
        }
        Ok(&self.buf[..len])
    }

    fn stat(&mut self, pid: Pid) -> Option<Stat> {
        parse_stat(self.read_kept(Kept::Stat(pid), format_args!("/proc/{pid}/stat")).ok()?)
    }

    /// argv (secrets redacted) joined by spaces, or `[comm]` when argv is empty (zombies, kernel threads, a
    /// process in the middle of an exec) or unreadable; true when from argv.
    fn command(&mut self, pid: Pid, stat: &Stat) -> (String, bool) {
        if stat.state == b'Z' {
            // Its memory, argv included, is gone; do not show the argv of a past read.
            return (format!("[{}]", stat.comm), false);
        }
        match self.read(format_args!("/proc/{pid}/cmdline")) {
            Ok(argv) if argv.iter().any(|&b| b != 0) => {
                let end = argv.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                // Argument by argument, as `/config` shows hooks' argv (`-pSECRET`,
                // `--token X`); once per process, as the command is kept while it stays put.
                let args: Vec<String> = argv[..end]
                    .split(|&b| b == 0)
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect();
                (crate::redact::argv(&args).join(" "), true)
            }
            _ => (format!("[{}]", stat.comm), false),
        }
    }

    /// Open fds: `st_size` of `/proc/<pid>/fd` on Linux 6.2+, by `fstat` of the directory
    /// kept open (the path lookup of a fresh `stat` cost more than the count itself);
    /// listing the directory, which costs several times more, only where that is 0 (older
    /// kernels, or truly no fds). The count is exact at every sample: the kernel counts
    /// the fd table at each `fstat`.
    fn fds(&mut self, pid: Pid) -> u64 {
        let key = Kept::Fds(pid);
        let size = match self.kept.get_mut(&key) {
            // A kept directory of a process that has exited fails (ENOENT), even if its
            // pid was reused: reopen by path, which finds the new process, if any.
            Some((dir, read_in)) => match dir.metadata() {
                Ok(meta) => {
                    *read_in = self.pass;
                    Some(meta.len())
                }
                Err(_) => {
                    self.kept.remove(&key);
                    None
                }
            },
            None => None,
        };
        let size = match size {
            Some(size) => size,
            None => {
                let Ok(dir) = self.open(format_args!("/proc/{pid}/fd")) else {
                    return 0; // exited, or not ours to read
                };
                let Ok(meta) = dir.metadata() else { return 0 };
                if self.kept.len() < MAX_KEPT_FILES {
                    self.kept.insert(key, (dir, self.pass));
                }
                meta.len()
            }
        };
        if size > 0 {
            return size;
        }
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/fd");
        fs::read_dir(&self.path).map_or(0, |entries| entries.count() as u64)
    }

    /// Appends the children of every thread of `pid` (a child belongs to the thread that
    /// forked it). `single_thread` skips listing `task/`: then the only task is `pid`.
    fn children(&mut self, pid: Pid, single_thread: bool, out: &mut Vec<Pid>) {
        if !self.children_files {
            self.children_from_scan(pid, out);
            return;
        }
        if single_thread {
            self.children_of_task(pid, pid, out);
            return;
        }
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return; // exited
        };
        for task in tasks.flatten() {
            if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                self.children_of_task(pid, tid, out);
            }
        }
    }

    fn children_of_task(&mut self, pid: Pid, tid: Pid, out: &mut Vec<Pid>) {
        let key = Kept::Children(pid, tid);
        if let Ok(text) = self.read_kept(key, format_args!("/proc/{pid}/task/{tid}/children")) {
            out.extend(
                text.split(|b| b.is_ascii_whitespace())
                    .filter_map(|p| std::str::from_utf8(p).ok()?.parse::<Pid>().ok()),
            );
        }
    }

    /// The slow path: parents from every `/proc/<pid>/stat`, read once per pass.
    fn children_from_scan(&mut self, parent: Pid, out: &mut Vec<Pid>) {
        if self.scan.is_none() {
            let mut map: HashMap<Pid, Vec<Pid>> = HashMap::new();
            if let Ok(entries) = fs::read_dir("/proc") {
                for entry in entries.flatten() {
                    let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                        continue;
                    };
                    if let Some(stat) = self.stat(pid) {
                        map.entry(stat.ppid).or_default().push(pid);
                    }
                }
            }
            self.scan = Some(map);
        }
        if let Some(children) = self.scan.as_ref().and_then(|map| map.get(&parent)) {
            out.extend_from_slice(children);
        }
    }
}

/// The whole of a /proc file from offset 0 into the start of `buf`; returns its length.
/// `pread` until a short or empty read, with no size hint (procfs sizes are 0, so
/// `read_to_end` would `statx` and `lseek` for nothing). `buf` only grows and is zeroed
/// only where it grows: clearing and re-zeroing 4 KiB per read was 40 % of a tick's
/// instructions (callgrind).
fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    const CHUNK: usize = 4096;
    let mut len = 0;
    loop {
        if buf.len() < len + CHUNK {
            buf.resize(len + CHUNK, 0);
        }
        let n = file.read_at(&mut buf[len..len + CHUNK], len as u64)?;
        len += n;
        if n < CHUNK {
            return Ok(len);
        }
    }
}

/// When the system booted, from `btime` in /proc/stat (whole seconds).
fn boot_time() -> io::Result<SystemTime> {
    let text = fs::read_to_string("/proc/stat")?;
    parse_btime(&text)
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: no btime line"))
}

fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// gsup's own cgroup v2 memory: (`memory.max`, None for `max`; `memory.current`). None
/// without a cgroup v2 hierarchy, or in its root cgroup (which has no such files).
pub fn cgroup_memory() -> Option<(Option<u64>, u64)> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = cgroup_dir(&cgroup, &mountinfo)?;
    let current = fs::read_to_string(format!("{dir}/memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let max = fs::read_to_string(format!("{dir}/memory.max"))
        .ok()
        .and_then(|text| text.trim().parse().ok()); // "max": no limit
    Some((max, current))
}

/// The directory of our cgroup v2: the `0::PATH` line of /proc/self/cgroup under the
/// cgroup2 mount point (usually /sys/fs/cgroup; /sys/fs/cgroup/unified on hybrid hosts).
fn cgroup_dir(cgroup: &str, mountinfo: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS... - FSTYPE SOURCE SUPER".
    let mount_point = mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        after.starts_with("cgroup2 ").then_some(())?;
        before.split(' ').nth(4)
    })?;
    let path = path.trim_end();
    Some(format!(
        "{}{}",
        mount_point.trim_end_matches('/'),
        if path == "/" { "" } else { path }
    ))
}

#[cfg(test)]
mod tests;
