//! Starting processes: what the child is started with (argv, environment, `PATH` lookup,
//! ids, stdio), prepared here in safe code; the `clone` itself and the child side are
//! `os::spawn` (docs/DESIGN.md "The spawn path").
//!
//! The main child is started by the [`Spawner`], a thread that lives as long as gsup, so
//! the event loop never waits for an exec; hooks and exec checks are started on the
//! loop's thread (a `CLONE_VFORK` pause of one exec, no copy of gsup). Nothing here waits
//! on pids but `os::reap_failed` for a child that could not exec, on the reaper's thread
//! (DEPS §4).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout};

use thiserror::Error;

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
    // gsup's environment, less what is gsup's own, plus the child's settings.
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os()
        .filter(|(name, _)| !STRIPPED_ENV.iter().any(|stripped| OsStr::new(stripped) == name))
        .collect();
    for (name, value) in &spec.env {
        env.insert(name.into(), value.into());
    }
    let candidates = candidates(&program, env.get(OsStr::new("PATH")).map(OsString::as_os_str))
        .into_iter()
        .map(|path| cstring(path.into_os_string().into_vec(), "the program"))
        .collect::<Result<Vec<_>, _>>()?;
    let argv = spec
        .argv
        .iter()
        .map(|arg| cstring(arg.clone().into_bytes(), "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .into_iter()
        .map(|(name, value)| {
            let mut pair = name.into_vec();
            pair.push(b'=');
            pair.extend(value.into_vec());
            cstring(pair, "the environment")
        })
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

/// The paths `execve` tries, as `execvp` would: the program itself when it names a path,
/// else each directory of the child's `PATH` (an empty entry is the working directory).
fn candidates(program: &str, path: Option<&OsStr>) -> Vec<PathBuf> {
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

/// Runs `prepared` (on the calling thread, which must live as long as gsup); a child that
/// ran but could not exec is collected at once (the caller is the reaper's thread).
fn start(spec: &ChildSpec, prepared: &os::Prepared) -> Result<Pid, SpawnError> {
    os::spawn(prepared).map_err(|failure| {
        if let Some(pid) = failure.pid {
            os::reap_failed(pid);
        }
        exec_failure(spec, failure.errno)
    })
}

/// For a hook: its own process group, no terminal, stdin from `/dev/null`, and its
/// stdout and stderr piped back to gsup, which logs them under the hook's name. Started
/// on the loop's thread, which is the reaper's.
pub fn spawn_piped(spec: &ChildSpec, setup: ChildSetup) -> Result<(Pid, ChildStdout, ChildStderr), SpawnError> {
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
    let pid = start(spec, &prepared)?;
    // gsup's copies of the write ends close here: EOF comes when the hook's side closes.
    drop((null, out_write, err_write));
    Ok((pid, ChildStdout::from(out_read), ChildStderr::from(err_read)))
}

/// For an exec check: its own process group, no terminal, stdio on `/dev/null`. Started
/// on the loop's thread, which is the reaper's.
pub fn spawn_quiet(spec: &ChildSpec, setup: ChildSetup) -> Result<Pid, SpawnError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| SpawnError::Other { program, source })?;
    let fd = Some(null.as_raw_fd());
    let prepared = prepare(spec, without_terminal(setup), [fd, fd, fd])?;
    start(spec, &prepared)
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

/// The outcome of one start by the [`Spawner`]: the pid, or why not (with the pid of a
/// child that ran but could not exec, which the reaper must collect).
pub struct SpawnReply {
    pub result: Result<Pid, (Option<Pid>, SpawnError)>,
}

/// One start for the spawner thread.
struct Job {
    prepared: os::Prepared,
    spec: ChildSpec,
    /// fds the child inherits from gsup only for the start (the shim's error pipe): gsup's
    /// copies close once the child has exec'd.
    keep: Vec<OwnedFd>,
}

/// The thread that starts the main child (issue 14): `clone(CLONE_VFORK)` suspends only
/// this thread until the child has exec'd, so the event loop (HTTP included) goes on.
/// It lives as long as gsup, never returning: PDEATHSIG belongs to the thread that
/// created the child. Create it after gsup's signals are blocked (threads inherit the
/// mask; the `signalfd` needs every thread to block them).
pub struct Spawner {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Spawner {
    pub fn start(replies: tokio::sync::mpsc::UnboundedSender<SpawnReply>) -> io::Result<Spawner> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("gsup-spawner".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    // The loop waits for this reply: it must come, even from a panic.
                    let program = job.spec.argv.first().cloned().unwrap_or_default();
                    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        os::spawn(&job.prepared)
                            .map_err(|failure| (failure.pid, exec_failure(&job.spec, failure.errno)))
                    }));
                    let result = started.unwrap_or_else(|_| {
                        let source = io::Error::other("the spawner thread panicked");
                        Err((None, SpawnError::Other { program, source }))
                    });
                    drop(job.keep);
                    let _ = replies.send(SpawnReply { result });
                }
                // gsup is on its way out: keep the thread, or PDEATHSIG would fire now.
                loop {
                    std::thread::park();
                }
            })?;
        Ok(Spawner { jobs })
    }

    /// Hands the start of `spec` to the thread; the reply comes on its channel. Errors in
    /// the spec itself (a NUL byte) come back at once.
    pub fn submit(&self, spec: &ChildSpec, setup: ChildSetup, keep: Vec<OwnedFd>) -> Result<(), SpawnError> {
        let prepared = prepare(spec, setup, [None, None, None])?;
        let job = Job {
            prepared,
            spec: spec.clone(),
            keep,
        };
        self.jobs.send(job).map_err(|_| SpawnError::Other {
            program: spec.argv.first().cloned().unwrap_or_default(),
            source: io::Error::other("the spawner thread is gone"),
        })
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
