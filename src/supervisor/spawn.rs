//! Starting the child: the only fork/exec code (through `std::process::Command`, with the
//! async-signal-safe child side in `os::pre_exec`).
//!
//! The `Child` handle std returns is dropped at once: its `Drop` neither waits nor kills,
//! and the reaper is the only code that waits on pids (DEPS §4).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};

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

/// Forks and execs the child in its own process group. Must be called from gsup's main
/// thread (PDEATHSIG is tied to the forking thread) and from the task that reaps, so the
/// pid is registered before its exit can be collected.
pub fn spawn(spec: &ChildSpec, setup: ChildSetup) -> Result<Pid, SpawnError> {
    let (program, mut command) = build(spec, setup);
    match command.spawn() {
        Ok(child) => Ok(child.id() as Pid),
        Err(source) => Err(classify(program, source, spec.workdir.as_deref())),
    }
}

/// What the exec shim reported through its error pipe: `spec`'s program could not be
/// executed (`errno` from its `execve`).
pub fn exec_failure(spec: &ChildSpec, errno: i32) -> SpawnError {
    let program = spec.argv.first().cloned().unwrap_or_default();
    classify(program, io::Error::from_raw_os_error(errno), spec.workdir.as_deref())
}

/// Like `spawn`, for a hook or an exec probe: its own process group, no terminal, and its
/// stdout and stderr piped back to gsup, which logs them under the hook's name.
pub fn spawn_piped(spec: &ChildSpec, setup: ChildSetup) -> Result<(Pid, ChildStdout, ChildStderr), SpawnError> {
    let (program, mut command) = build(
        spec,
        ChildSetup {
            foreground_tty: None,
            ..setup
        },
    );
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match command.spawn() {
        Ok(mut child) => {
            let pid = child.id() as Pid;
            match (child.stdout.take(), child.stderr.take()) {
                (Some(stdout), Some(stderr)) => Ok((pid, stdout, stderr)),
                // Cannot happen with both piped; the process still gets reaped as usual.
                _ => Err(SpawnError::Other {
                    program,
                    source: io::Error::other("no pipes"),
                }),
            }
        }
        Err(source) => Err(classify(program, source, spec.workdir.as_deref())),
    }
}

/// Like `spawn`, for an exec check: its own process group, no terminal, stdio `stdio`.
pub fn spawn_quiet(spec: &ChildSpec, setup: ChildSetup, stdio: Stdio) -> Result<Pid, SpawnError> {
    let (program, mut command) = build(
        spec,
        ChildSetup {
            foreground_tty: None,
            ..setup
        },
    );
    command.stdin(Stdio::null()).stdout(stdio).stderr(Stdio::null());
    match command.spawn() {
        Ok(child) => Ok(child.id() as Pid),
        Err(source) => Err(classify(program, source, spec.workdir.as_deref())),
    }
}

fn build(spec: &ChildSpec, setup: ChildSetup) -> (String, Command) {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut command = Command::new(&program);
    command.args(spec.argv.iter().skip(1)).process_group(0);
    for name in STRIPPED_ENV {
        command.env_remove(name);
    }
    command.envs(&spec.env);
    if let Some(dir) = &spec.workdir {
        command.current_dir(dir);
    }
    // std applies gid/uid before the pre_exec closures run, so PDEATHSIG set there
    // survives the privilege drop (prctl(2) clears it on uid changes).
    if let Some(gid) = spec.gid {
        command.gid(gid);
    }
    if let Some(uid) = spec.uid {
        command.uid(uid);
    }
    os::install_pre_exec(&mut command, setup);
    (program, command)
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
