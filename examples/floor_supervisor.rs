//! The least a Rust supervisor can be, as a floor for `bench/signal_latency.py`: block
//! HUP, INT, USR1, USR2, TERM and CHLD, start the program, `sigwait`, forward all but
//! CHLD, reap, exit with the program's code. No reaping of orphans, no HTTP, no logs: what is left of gsup's
//! SIGTERM-to-exit time above this is gsup's own (bench/README.md, issue 14).
//!
//! `cargo build --release --example floor_supervisor`, then
//! `bench/signal_latency.py --fixture FIXTURE "tini --" target/release/examples/floor_supervisor`.
//! With `FLOOR_MAP=FILE` it first maps FILE and touches every page of it, to see what a
//! larger mapped image costs at exit (gsup's binary: ~half of gsup's gap to this floor).

use std::os::unix::process::CommandExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: floor_supervisor PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    // SAFETY: sigemptyset/sigaddset/pthread_sigmask write only the local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGTERM,
            libc::SIGCHLD,
        ] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let _mapping = std::env::var("FLOOR_MAP").ok().map(|path| touch_mapped(&path));
    let mut command = std::process::Command::new(program);
    command.args(rest);
    // SAFETY: only async-signal-safe calls between fork and exec (sigemptyset,
    // pthread_sigmask on a local set).
    unsafe {
        command.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let pid = match command.spawn() {
        Ok(child) => child.id() as libc::pid_t,
        Err(error) => {
            eprintln!("floor_supervisor: {program}: {error}");
            std::process::exit(127);
        }
    };
    loop {
        let mut signal = 0;
        // SAFETY: sigwait reads the local set and writes the local `signal`; kill and
        // waitpid take plain integers and a local status.
        unsafe {
            libc::sigwait(&set, &mut signal);
            if signal != libc::SIGCHLD {
                libc::kill(pid, signal);
            }
            let mut status = 0;
            if libc::waitpid(pid, &mut status, libc::WNOHANG) == pid {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                std::process::exit(code);
            }
        }
    }
}

/// Maps `path` and reads one byte of every page, so that each is mapped in this process.
fn touch_mapped(path: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap_or_else(|error| {
        eprintln!("floor_supervisor: {path}: {error}");
        std::process::exit(2);
    });
    let len = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    if len == 0 {
        return file;
    }
    // SAFETY: a private read-only mapping of an open file, read within its length and
    // never unmapped (the process exits with it, which is what is measured).
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        if base == libc::MAP_FAILED {
            eprintln!("floor_supervisor: cannot map {path}");
            std::process::exit(2);
        }
        let bytes = base as *const u8;
        let mut sum = 0u8;
        for offset in (0..len).step_by(4096) {
            sum = sum.wrapping_add(std::ptr::read_volatile(bytes.add(offset)));
        }
        std::hint::black_box(sum);
    }
    file
}
