//! Starting processes: what the child is started with (argv, environment, `PATH` lookup,
//! ids, stdio), prepared here in safe code; the `clone` itself and the child side are
//! `os::spawn` (docs/DESIGN.md "The spawn path").
//!
//! Once the loop serves, every start (the main child, hooks, exec checks) runs on the
//! spawner thread, which lives as long as gsup, so the event loop never waits for an exec
//! (a `CLONE_VFORK` pause is the spawner's alone); before, on the loop's own thread. The
//! loop submits through a [`Starter`] and learns the pid by a [`SpawnReply`]. Nothing
//! here waits on pids (DEPS §4).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout};

use thiserror::Error;

use super::checks::CheckId;
use super::state::Pid;
use crate::os::{self, ChildSetup};

/// Variables gsup never passes on: they describe gsup's own relation to systemd, or
/// gsup's own secret (DESIGN §9, DEPS §12).
const STRIPPED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "GSUP_CONTROL_TOKEN",
];

/// What every generation of the child is started with.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub argv: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("program not found: {program}")]
    NotFound { program: String },
    #[error("program is not executable: {program}: {source}")]
    NotExecutable { program: String, source: io::Error },
    /// `execve` says EACCES for a directory; the shell's word is clearer.
    #[error("program is a directory: {program}")]
    IsDirectory { program: String },
    /// The kernel lacked something for it (EMFILE, ENFILE, EAGAIN, ENOMEM): a child exit
    /// with code 1 for the restart policy, never the 126 of a bad program (DESIGN §4).
    #[error("cannot start {program}: {source}")]
    Resources { program: String, source: io::Error },
    #[error("cannot start {program}: {source}")]
    Other { program: String, source: io::Error },
}

impl SpawnError {
    /// The shell's conventions: 127 not found, 126 found but not runnable.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } | SpawnError::IsDirectory { .. } | SpawnError::Other { .. } => 126,
            SpawnError::Resources { .. } => 1,
        }
    }

    /// Whether the start may work when tried again (the restart policy decides).
    pub fn is_resources(&self) -> bool {
        matches!(self, SpawnError::Resources { .. })
    }
}

/// Everything the child needs, built before `clone` (DESIGN §4 Spawning): the child
/// allocates nothing.
fn prepare(spec: &ChildSpec, setup: ChildSetup, stdio: [Option<i32>; 3]) -> Result<os::Prepared, SpawnError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let invalid = |what: &str| SpawnError::Other {
        program: program.clone(),
        source: io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")),
    };
    let cstring = |bytes: Vec<u8>, what: &str| CString::new(bytes).map_err(|_| invalid(what));
    // gsup's environment, less what is gsup's own, plus the child's settings (which win),
    // each `NAME=VALUE` built once: this runs before every start (issue 14).
    let mut envp = Vec::new();
    let mut path = None;
    let mut inherited: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| {
            let overridden = name.to_str().is_some_and(|name| spec.env.contains_key(name));
            !overridden && !STRIPPED_ENV.iter().any(|stripped| OsStr::new(stripped) == name)
        })
        .collect();
    // A name gsup got twice (a hand-built envp) is passed once, with its last value.
    let mut at = 0;
    while at < inherited.len() {
        if inherited[at + 1..].iter().any(|(later, _)| *later == inherited[at].0) {
            inherited.remove(at);
        } else {
            at += 1;
        }
    }
    let settings = spec.env.iter().map(|(name, value)| (name.into(), value.into()));
    for (name, value) in inherited.into_iter().chain(settings) {
        let entry = env_entry(name.as_bytes(), value.as_bytes());
        if name == "PATH" {
            path = Some(value);
        }
        envp.push(cstring(entry, "the environment")?);
    }
    let candidates = candidates(&program, path.as_deref())
        .into_iter()
        .map(|path| cstring(path.into_os_string().into_vec(), "the program"))
        .collect::<Result<Vec<_>, _>>()?;
    let argv = spec
        .argv
        .iter()
        .map(|arg| cstring(arg.clone().into_bytes(), "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let workdir = spec
        .workdir
        .as_ref()
        .map(|dir| cstring(dir.as_os_str().as_bytes().to_vec(), "[process] workdir"))
        .transpose()?;
    Ok(os::Prepared::new(
        candidates,
        argv,
        envp,
        workdir,
        (spec.uid, spec.gid),
        stdio,
        setup,
    ))
}

/// `NAME=VALUE`, with room for the NUL `CString` adds.
fn env_entry(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
    entry.extend_from_slice(name);
    entry.push(b'=');
    entry.extend_from_slice(value);
    entry
}

/// The paths `execve` tries, as `execvp` would: the program itself when it names a path,
/// else each directory of the child's `PATH` (an empty entry is the working directory).
pub(crate) fn candidates(program: &str, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.contains('/') {
        return vec![PathBuf::from(program)];
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| match dir {
            b"" => PathBuf::from(program),
            dir => Path::new(OsStr::from_bytes(dir)).join(program),
        })
        .collect()
}

fn without_terminal(setup: ChildSetup) -> ChildSetup {
    ChildSetup {
        foreground_tty: None,
        ..setup
    }
}

/// What the exec shim reported through its error pipe: `spec`'s program could not be
/// executed (`errno` from its `execve`).
pub fn exec_failure(spec: &ChildSpec, errno: i32) -> SpawnError {
    let program = spec.argv.first().cloned().unwrap_or_default();
    classify(program, io::Error::from_raw_os_error(errno), spec.workdir.as_deref())
}

/// Who asked for a start, so the reply finds its way back (the loop routes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The next generation of the main child.
    Main,
    /// An exec hook: the run of hooks and its index in `[[hooks]]`.
    Hook { run: u64, index: usize },
    /// An exec readiness probe or dependency check.
    Check(CheckId),
}

/// The outcome of one start by the spawner thread: the pid, or why not (with the pid of
/// a child that ran but could not exec, which the loop must collect).
pub struct SpawnReply {
    pub purpose: Purpose,
    pub result: Result<Pid, (Option<Pid>, SpawnError)>,
}

/// One start for the spawner thread.
struct Job {
    purpose: Purpose,
    prepared: os::Prepared,
    spec: ChildSpec,
    /// gsup's copies of fds the child inherits (the shim's error pipe, a hook's pipes and
    /// `/dev/null`): closed once the child has exec'd, so EOF comes from the child's side.
    keep: Vec<OwnedFd>,
}

/// Hands starts to the spawner thread (issue 14): `clone(CLONE_VFORK)` suspends only
/// that thread until the child has exec'd, so the event loop (HTTP included) goes on. The
/// reply comes on the loop's channel; until then a pid the reaper collects may be one of
/// these starts ([`Starter::in_flight`]).
///
/// Until the loop serves anything ([`Starter::serving`]) starts run on the calling thread
/// instead: nothing waits on the loop yet, and `gsup run -- PROGRAM` then never creates
/// the thread, its stack and its allocator arena unless a later start needs them (a
/// restart, a hook, an exec check). The reply comes on the same channel either way.
#[derive(Clone)]
pub struct Starter {
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    /// The spawner thread's queue, once the thread runs.
    jobs: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    replies: tokio::sync::mpsc::UnboundedSender<SpawnReply>,
    /// Starts run on the calling thread (the loop serves nothing yet).
    inline: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Starts submitted so far.
    submitted: std::sync::atomic::AtomicU64,
}

/// Runs one start and sends its reply. The loop waits for this reply: it must come, even
/// from a panic.
fn run_job(job: Job, replies: &tokio::sync::mpsc::UnboundedSender<SpawnReply>) {
    let program = job.spec.argv.first().cloned().unwrap_or_default();
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        os::spawn(&job.prepared).map_err(|failure| (failure.pid, exec_failure(&job.spec, failure.errno)))
    }));
    let result = started.unwrap_or_else(|_| {
        let source = io::Error::other("the spawner thread panicked");
        Err((None, SpawnError::Other { program, source }))
    });
    drop(job.keep);
    let purpose = job.purpose;
    let _ = replies.send(SpawnReply { purpose, result });
}

/// The thread that runs every start once the loop serves. It lives as long as gsup,
/// never returning: PDEATHSIG belongs to the thread that created the child. It inherits
/// the signal mask of the loop's thread, which blocks what the `signalfd` reads by then.
fn start_spawner(replies: tokio::sync::mpsc::UnboundedSender<SpawnReply>) -> io::Result<std::sync::mpsc::Sender<Job>> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("gsup-spawner".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            while let Ok(job) = queue.recv() {
                run_job(job, &replies);
            }
            // gsup is on its way out: keep the thread, or PDEATHSIG would fire now.
            loop {
                std::thread::park();
            }
        })?;
    Ok(jobs)
}

impl Starter {
    /// Replies go to `replies`. The spawner thread is created by the first start after
    /// [`Starter::serving`].
    pub fn new(replies: tokio::sync::mpsc::UnboundedSender<SpawnReply>) -> Starter {
        Starter {
            shared: std::sync::Arc::new(Shared {
                jobs: std::sync::Mutex::new(None),
                replies,
                inline: std::sync::atomic::AtomicBool::new(true),
                in_flight: Default::default(),
                submitted: Default::default(),
            }),
        }
    }

    /// The loop now serves (HTTP, control, timers): from here on every start runs on the
    /// spawner thread, so the loop never waits for an exec.
    pub fn serving(&self) {
        self.shared.inline.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts that have no reply yet.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many starts were submitted so far (a new one may have left a process since).
    pub fn submitted(&self) -> u64 {
        self.shared.submitted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The loop got a reply.
    pub fn answered(&self) {
        self.shared.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn submit_prepared(
        &self,
        purpose: Purpose,
        prepared: os::Prepared,
        spec: &ChildSpec,
        keep: Vec<OwnedFd>,
    ) -> Result<(), SpawnError> {
        let job = Job {
            purpose,
            prepared,
            spec: spec.clone(),
            keep,
        };
        let program = || spec.argv.first().cloned().unwrap_or_default();
        if self.shared.inline.load(std::sync::atomic::Ordering::Relaxed) {
            // The reply is read by this same thread, after this returns.
            run_job(job, &self.shared.replies);
        } else {
            let mut jobs = self
                .shared
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let queue = match &mut *jobs {
                Some(queue) => queue,
                // A thread the kernel refuses (EAGAIN) is a start refused for lack of a
                // resource: code 1 for the restart policy (DESIGN §4).
                None => jobs.insert(
                    start_spawner(self.shared.replies.clone()).map_err(|source| classify(program(), source, None))?,
                ),
            };
            queue.send(job).map_err(|_| SpawnError::Other {
                program: program(),
                source: io::Error::other("the spawner thread is gone"),
            })?;
        }
        self.shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shared.submitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The main child, with gsup's stdio. Errors in the spec itself (a NUL byte) come back
    /// at once; the rest in the reply.
    pub fn submit(&self, spec: &ChildSpec, setup: ChildSetup, keep: Vec<OwnedFd>) -> Result<(), SpawnError> {
        let prepared = prepare(spec, setup, [None, None, None])?;
        self.submit_prepared(Purpose::Main, prepared, spec, keep)
    }

    /// For a hook: its own process group, no terminal, stdin from `/dev/null`, and its
    /// stdout and stderr piped back to gsup (the read ends, returned at once), which logs
    /// them under the hook's name.
    pub fn submit_piped(
        &self,
        purpose: Purpose,
        spec: &ChildSpec,
        setup: ChildSetup,
    ) -> Result<(ChildStdout, ChildStderr), SpawnError> {
        let program = spec.argv.first().cloned().unwrap_or_default();
        let other = |source: io::Error| SpawnError::Other {
            program: program.clone(),
            source,
        };
        let null = std::fs::File::open("/dev/null").map_err(other)?;
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (out_read, out_write) = nix::unistd::pipe2(cloexec).map_err(|e| other(e.into()))?;
        let (err_read, err_write) = nix::unistd::pipe2(cloexec).map_err(|e| other(e.into()))?;
        let stdio = [
            Some(null.as_raw_fd()),
            Some(out_write.as_raw_fd()),
            Some(err_write.as_raw_fd()),
        ];
        let prepared = prepare(spec, without_terminal(setup), stdio)?;
        self.submit_prepared(purpose, prepared, spec, vec![null.into(), out_write, err_write])?;
        Ok((ChildStdout::from(out_read), ChildStderr::from(err_read)))
    }

    /// For an exec check: its own process group, no terminal, stdio on `/dev/null`.
    pub fn submit_quiet(&self, purpose: Purpose, spec: &ChildSpec, setup: ChildSetup) -> Result<(), SpawnError> {
        let program = spec.argv.first().cloned().unwrap_or_default();
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|source| SpawnError::Other { program, source })?;
        let fd = Some(null.as_raw_fd());
        let prepared = prepare(spec, without_terminal(setup), [fd, fd, fd])?;
        self.submit_prepared(purpose, prepared, spec, vec![null.into()])
    }
}

fn classify(program: String, source: io::Error, workdir: Option<&Path>) -> SpawnError {
    if matches!(
        source.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
    ) {
        return SpawnError::Resources { program, source };
    }
    let denied = source.kind() == io::ErrorKind::PermissionDenied
        || matches!(source.raw_os_error(), Some(libc::ENOEXEC | libc::EISDIR | libc::EACCES));
    // A program named by a path is looked up from the child's directory.
    let path = match workdir {
        Some(dir) => dir.join(&program),
        None => PathBuf::from(&program),
    };
    match source.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound { program },
        _ if denied && program.contains('/') && path.is_dir() => SpawnError::IsDirectory { program },
        _ if denied => SpawnError::NotExecutable { program, source },
        _ => SpawnError::Other { program, source },
    }
}
