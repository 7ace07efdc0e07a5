//! DESIGN §4 Spawning: resources the child starts with, resource failures at spawn time,
//! PDEATHSIG on everything gsup starts, and the exec shim's failed starts.

mod common;

use common::*;

/// The test runs as root (CI does): the resource failure below needs a privilege drop.
fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(uid, "0", "this test needs root (a `[process] user` privilege drop)");
}

/// A process of user `nobody` for as long as the value lives. The kernel refuses a
/// privilege drop's `execve` only when the user already has more processes than
/// RLIMIT_NPROC allows, not counting the one that changes user: with the limit at 0, this
/// one makes it so.
fn a_process_of_nobody() -> Running {
    assert!(have("setpriv"), "setpriv (util-linux) is needed");
    let mut holder = start(
        cmd(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                "echo holding; exec sleep 60",
            ],
        ),
        &[],
    );
    holder.expect_line("holding");
    holder
}

/// `gsup run --config FILE ARGS...` with `config` in a temporary file (kept alive by the
/// returned handle).
fn gsup_configured(config: &str, args: &[&str]) -> (Running, tempfile::NamedTempFile) {
    let file = config_file(config);
    let path = file.path().to_str().expect("utf-8 path");
    let mut full = vec!["--config", path];
    full.extend_from_slice(args);
    (gsup_run(&full, &[]), file)
}

/// `prlimit ARGS -- gsup run ARGS...`: gsup started with the given resource limits.
fn gsup_under_limits(limits: &[&str], args: &[&str], env: &[(&str, &str)]) -> Running {
    assert!(have("prlimit"), "prlimit (util-linux) is needed");
    let mut command = cmd("prlimit", limits);
    command.args(["--", GSUP, "run", "--http", "off"]).args(args);
    start(command, env)
}

/// The soft `open files` limit of `pid`, from `/proc/<pid>/limits`.
fn soft_nofile(pid: i32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open files line");
    line.split_whitespace().nth(3).expect("soft limit").to_string()
}

#[test]
fn gsup_raises_its_own_nofile_limit_but_the_child_keeps_the_one_gsup_started_with() {
    let mut gsup = gsup_under_limits(
        &["--nofile=1024:8192"],
        &[
            "--",
            "sh",
            "-c",
            "echo soft=$(ulimit -n) hard=$(ulimit -Hn); exec sleep 30",
        ],
        &[],
    );
    let line = gsup.expect_line("soft=");
    assert_eq!(line.trim(), "soft=1024 hard=8192", "the child's limits");
    assert_eq!(
        soft_nofile(gsup.pid()),
        "8192",
        "gsup's own soft limit is raised to the hard one"
    );
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
}

#[test]
fn hooks_and_exec_probes_get_the_nofile_limit_gsup_started_with() {
    let dir = tempfile::tempdir().expect("temp dir");
    let probe_file = dir.path().join("probe");
    let config = config_file(&format!(
        "[readiness]\nprobe = {{ exec = [\"sh\", \"-c\", \"ulimit -n > {}\"] }}\n\
         [[hooks]]\nphase = \"pre_stop\"\nexec = [\"sh\", \"-c\", \"echo hook-soft=$(ulimit -n)\"]\n",
        probe_file.display()
    ));
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_under_limits(
        &["--nofile=1024:8192"],
        &["--config", path, "--", "sh", "-c", "echo started; exec sleep 30"],
        &[],
    );
    gsup.expect_line("started");
    let probed = wait_until(PATIENCE, || {
        std::fs::read_to_string(&probe_file).is_ok_and(|text| text.ends_with('\n'))
    });
    assert!(probed, "the exec probe ran");
    assert_eq!(std::fs::read_to_string(&probe_file).unwrap_or_default().trim(), "1024");
    // The hook's output is logged by gsup (stderr).
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
    let stderr = gsup.stderr();
    assert!(stderr.contains("hook-soft=1024"), "hook's limit: {stderr}");
}

/// RLIMIT_NPROC 0 with a non-root `[process] user`: the privilege drop succeeds, but the
/// kernel then refuses `execve` with EAGAIN (PF_NPROC_EXCEEDED). A resource failure: a
/// child exit with code 1 for the restart policy, not the 126 of a bad program.
#[test]
fn a_spawn_refused_for_lack_of_resources_is_an_exit_with_code_1_that_on_failure_restarts() {
    require_root();
    let _holder = a_process_of_nobody();
    let config = config_file(
        "[process]\nuser = \"nobody\"\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 2\n\
         backoff_initial = \"10ms\"\nbackoff_max = \"10ms\"\n",
    );
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_under_limits(&["--nproc=0"], &["--config", path, "--", "true"], &[]);
    let code = gsup.wait_code(PATIENCE);
    let stderr = gsup.stderr();
    assert_eq!(
        code, 1,
        "a resource failure is exit code 1 after the restarts: {stderr}"
    );
    assert!(
        stderr.matches("restarting the child").count() >= 2,
        "on-failure restarted it: {stderr}"
    );
    assert!(stderr.contains("Resource temporarily unavailable"), "{stderr}");
}

#[test]
fn a_spawn_refused_for_lack_of_resources_under_policy_never_ends_gsup_with_1() {
    require_root();
    let _holder = a_process_of_nobody();
    let config = config_file("[process]\nuser = \"nobody\"\n[restart]\npolicy = \"never\"\n");
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_under_limits(&["--nproc=0"], &["--config", path, "--", "true"], &[]);
    let code = gsup.wait_code(PATIENCE);
    let stderr = gsup.stderr();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Resource temporarily unavailable"), "{stderr}");
}

/// A command line no other process on the machine has: `gsup-test-child echo MARKER
/// forever` runs until killed, with the marker in its `/proc/<pid>/cmdline`.
fn marker(what: &str) -> String {
    format!("pdeathsig-{what}-{}", std::process::id())
}

/// The pids whose command line contains `needle`, gsup's own (`except`) left out: the
/// child's command line is part of gsup's.
fn processes_with(needle: &str, except: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != except)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let line: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
                String::from_utf8_lossy(&line).contains(needle)
            })
        })
        .collect()
}

/// SIGKILLs gsup once the process carrying `marker` runs, then waits for that process to
/// be gone: PDEATHSIG (DESIGN §4 Spawning).
fn kill_gsup_and_expect_gone(mut gsup: Running, marker: &str) {
    let gsup_pid = gsup.pid();
    assert!(
        wait_until(PATIENCE, || !processes_with(marker, gsup_pid).is_empty()),
        "the process `{marker}` never started: {}",
        gsup.stderr()
    );
    send_signal(gsup_pid, libc::SIGKILL);
    gsup.wait_exit(PATIENCE);
    let gone = wait_until(PATIENCE, || processes_with(marker, gsup_pid).is_empty());
    let left = processes_with(marker, gsup_pid);
    for &pid in &left {
        // Clean up after a failure: our own stray, by its pid.
        send_signal(pid, libc::SIGKILL);
    }
    assert!(gone, "`{marker}` outlived a kill -9 of gsup: {left:?}");
}

fn forever_argv(marker: &str) -> String {
    format!("[\"{CHILD}\", \"echo\", \"{marker}\", \"forever\"]")
}

#[test]
fn kill_9_of_gsup_takes_the_child() {
    let marker = marker("child");
    let gsup = gsup_run(&["--", CHILD, "echo", &marker, "forever"], &[]);
    kill_gsup_and_expect_gone(gsup, &marker);
}

#[test]
fn kill_9_of_gsup_takes_a_running_hook() {
    let marker = marker("hook");
    let (mut gsup, _config) = gsup_configured(
        &format!(
            "[shutdown]\ntimeout = \"60s\"\n[[hooks]]\nphase = \"pre_stop\"\nexec = {}\n",
            forever_argv(&marker)
        ),
        &["--", CHILD, "echo", "started", "forever"],
    );
    gsup.expect_line("started");
    gsup.signal(libc::SIGTERM);
    kill_gsup_and_expect_gone(gsup, &marker);
}

#[test]
fn kill_9_of_gsup_takes_a_running_exec_probe() {
    let marker = marker("probe");
    let (gsup, _config) = gsup_configured(
        &format!(
            "[readiness]\nprobe = {{ exec = {} }}\ntimeout = \"60s\"\n",
            forever_argv(&marker)
        ),
        &["--", CHILD, "forever"],
    );
    kill_gsup_and_expect_gone(gsup, &marker);
}

#[test]
fn kill_9_of_gsup_takes_a_running_exec_dependency_check() {
    let marker = marker("dependency");
    let (gsup, _config) = gsup_configured(
        &format!("[[dependencies]]\nname = \"db\"\nexec = {}\n", forever_argv(&marker)),
        &["--", CHILD, "forever"],
    );
    kill_gsup_and_expect_gone(gsup, &marker);
}

#[test]
fn kill_9_of_gsup_takes_a_child_that_runs_as_another_user() {
    require_root();
    let marker = marker("user");
    let (gsup, _config) = gsup_configured(
        "[process]\nuser = \"nobody\"\n",
        &["--", CHILD, "echo", &marker, "forever"],
    );
    kill_gsup_and_expect_gone(gsup, &marker);
}

/// With a watchdog the child runs through the exec shim (DESIGN §8): a missing program is
/// still a failed start, 127 at once, not an exit the restart policy retries.
#[test]
fn a_missing_program_behind_the_exec_shim_is_a_failed_start_not_restarted() {
    let (mut gsup, _config) = gsup_configured(
        "[notify]\nwatchdog = \"10s\"\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 5\n\
         backoff_initial = \"10ms\"\nbackoff_max = \"10ms\"\n",
        &["--", "/nonexistent/program"],
    );
    let code = gsup.wait_code(PATIENCE);
    let stderr = gsup.stderr();
    assert_eq!(code, 127, "{stderr}");
    assert!(
        !stderr.contains("restarting the child"),
        "a typo is not restarted: {stderr}"
    );
    assert_eq!(
        stderr.matches("program not found: /nonexistent/program").count(),
        1,
        "reported once: {stderr}"
    );
}

#[test]
fn a_non_executable_program_behind_the_exec_shim_is_126_not_restarted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    let (mut gsup, _config) = gsup_configured(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n[restart]\npolicy = \"always\"\n\
         backoff_initial = \"10ms\"\nbackoff_max = \"10ms\"\n",
        &["--", script.to_str().expect("utf-8")],
    );
    let code = gsup.wait_code(PATIENCE);
    let stderr = gsup.stderr();
    assert_eq!(code, 126, "{stderr}");
    assert!(!stderr.contains("restarting the child"), "{stderr}");
    assert!(stderr.contains("not executable"), "{stderr}");
}

/// The program's own 127 is an exit like any other: the restart policy decides (the
/// negative control for the two tests above).
#[test]
fn a_program_that_itself_exits_127_behind_the_exec_shim_is_restarted() {
    let (mut gsup, _config) = gsup_configured(
        "[notify]\nwatchdog = \"10s\"\n[restart]\npolicy = \"on-failure\"\nmax_restarts = 1\n\
         backoff_initial = \"10ms\"\nbackoff_max = \"10ms\"\n",
        &["--", "sh", "-c", "exit 127"],
    );
    let code = gsup.wait_code(PATIENCE);
    let stderr = gsup.stderr();
    assert_eq!(code, 127, "{stderr}");
    assert!(stderr.contains("restarting the child"), "{stderr}");
}

#[test]
fn a_missing_program_is_reported_once() {
    let mut gsup = gsup_run(&["--", "/nonexistent/program"], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 127);
    let stderr = gsup.stderr();
    assert_eq!(stderr.matches("/nonexistent/program").count(), 1, "{stderr}");
}

#[test]
fn a_directory_as_the_program_says_it_is_a_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(&["--", path], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 126);
    let stderr = gsup.stderr();
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(!stderr.contains("Permission denied"), "{stderr}");
}

/// PDEATHSIG belongs to the thread that started the child: a generation started by a
/// restart (much later than the first) must still die with gsup.
#[test]
fn kill_9_of_gsup_takes_a_restarted_child() {
    let marker = marker("restarted");
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first");
    let first = first.to_str().expect("utf-8 path");
    // The first generation exits 3; the second runs forever with the marker.
    let script = format!("if [ -e {first} ]; then exec {CHILD} echo {marker} forever; else touch {first}; exit 3; fi");
    let config =
        config_file("[restart]\npolicy = \"on-failure\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"10ms\"\n");
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(&["--config", path, "--", "sh", "-c", &script], &[]);
    gsup.expect_line(&marker);
    kill_gsup_and_expect_gone(gsup, &marker);
}

/// The program is looked up in the child's `PATH` (`[process] env` may set it), as
/// `execvp` does: past a directory whose entry is not executable, to one that is.
#[test]
fn the_program_is_found_on_the_childs_path_past_a_non_executable_entry() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let (denied, allowed) = (dir.path().join("denied"), dir.path().join("allowed"));
    for (sub, mode) in [(&denied, 0o644), (&allowed, 0o755)] {
        std::fs::create_dir(sub).expect("mkdir");
        let program = sub.join("gsup-path-probe");
        std::fs::write(&program, format!("#!/bin/sh\necho from {}\n", sub.display())).expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let (mut gsup, _config) = gsup_configured(
        &format!(
            "[process]\nenv = {{ PATH = \"{}:{}:/usr/bin:/bin\" }}\n",
            denied.display(),
            allowed.display()
        ),
        &["--", "gsup-path-probe"],
    );
    let line = gsup.expect_line("from ");
    assert!(line.ends_with("allowed"), "{line}");
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

/// Only a non-executable entry on the `PATH`: 126, as the shell says.
#[test]
fn a_program_found_only_without_execute_permission_is_126() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let program = dir.path().join("gsup-path-denied");
    std::fs::write(&program, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (mut gsup, _config) = gsup_configured(
        &format!(
            "[process]\nenv = {{ PATH = \"{}:/usr/bin:/bin\" }}\n",
            dir.path().display()
        ),
        &["--", "gsup-path-denied"],
    );
    assert_eq!(gsup.wait_code(PATIENCE), 126, "{}", gsup.stderr());
}

/// Arguments and the environment reach the program byte for byte; gsup's own secret and
/// systemd variables do not.
#[test]
fn argv_and_environment_reach_the_child_and_gsups_own_variables_do_not() {
    let mut gsup = gsup_run(
        &[
            "--",
            "sh",
            "-c",
            "echo \"arg=[$1] env=[$GSUP_SPAWN_TEST] token=[$GSUP_CONTROL_TOKEN] notify=[$NOTIFY_SOCKET]\"",
            "sh",
            "two words é",
        ],
        &[
            ("GSUP_SPAWN_TEST", "kept = yes"),
            ("GSUP_CONTROL_TOKEN", "secret"),
            ("NOTIFY_SOCKET", "/nonexistent/notify"),
        ],
    );
    let line = gsup.expect_line("arg=");
    assert_eq!(line, "arg=[two words é] env=[kept = yes] token=[] notify=[]");
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

/// An executable script without `#!` in `dir`: `execve` refuses it (ENOEXEC); `execvp`
/// (what tini, dumb-init and std's spawn used) runs it with `/bin/sh`, and so does gsup.
fn script_without_shebang(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(name);
    std::fs::write(&script, body).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script.to_str().expect("utf-8 path").to_string()
}

#[test]
fn a_script_without_a_shebang_runs_under_sh_with_its_arguments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = script_without_shebang(dir.path(), "no-shebang", "echo \"script ran: [$1] [$2]\"\nexit 7\n");
    let mut gsup = gsup_run(&["--", &script, "one", "two words"], &[]);
    let line = gsup.expect_line("script ran");
    assert_eq!(line.trim(), "script ran: [one] [two words]");
    assert_eq!(gsup.wait_code(PATIENCE), 7, "{}", gsup.stderr());
}

#[test]
fn a_script_without_a_shebang_found_on_the_path_runs_under_sh() {
    let dir = tempfile::tempdir().expect("temp dir");
    script_without_shebang(dir.path(), "gsup-no-shebang", "echo \"found and ran: [$1]\"\n");
    let (mut gsup, _config) = gsup_configured(
        &format!(
            "[process]\nenv = {{ PATH = \"{}:/usr/bin:/bin\" }}\n",
            dir.path().display()
        ),
        &["--", "gsup-no-shebang", "arg"],
    );
    let line = gsup.expect_line("found and ran");
    assert_eq!(line.trim(), "found and ran: [arg]");
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

#[test]
fn a_script_without_a_shebang_runs_under_sh_behind_the_exec_shim() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = script_without_shebang(
        dir.path(),
        "no-shebang",
        "echo \"shimmed script ran: [$1] listen_pid_is_self=$([ \"$LISTEN_PID\" = $$ ] && echo yes)\"\nexit 5\n",
    );
    let (mut gsup, _config) = gsup_configured("[[listen]]\naddress = \"127.0.0.1:0\"\n", &["--", &script, "one"]);
    let line = gsup.expect_line("shimmed script ran");
    assert_eq!(line.trim(), "shimmed script ran: [one] listen_pid_is_self=yes");
    assert_eq!(gsup.wait_code(PATIENCE), 5, "{}", gsup.stderr());
}

#[test]
fn a_hook_and_an_exec_probe_without_a_shebang_run_under_sh() {
    let dir = tempfile::tempdir().expect("temp dir");
    let probed = dir.path().join("probed");
    let probe = script_without_shebang(dir.path(), "probe", &format!("touch {}\n", probed.display()));
    let hook = script_without_shebang(dir.path(), "hook", "echo \"hook script ran: [$1]\"\n");
    let (mut gsup, _config) = gsup_configured(
        &format!(
            "[readiness]\nprobe = {{ exec = [\"{probe}\"] }}\n\
             [[hooks]]\nphase = \"pre_stop\"\nexec = [\"{hook}\", \"arg\"]\n"
        ),
        &["--", CHILD, "echo", "started", "forever"],
    );
    gsup.expect_line("started");
    assert!(
        wait_until(PATIENCE, || probed.exists()),
        "the exec probe ran: {}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
    let stderr = gsup.stderr();
    assert!(stderr.contains("hook script ran: [arg]"), "{stderr}");
}

/// The thread of gsup (by its name) whose `/proc/<pid>/task/<tid>/children` lists `child`:
/// a child belongs to the thread that created it.
fn creating_thread(gsup: i32, child: i32) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{gsup}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let children = std::fs::read_to_string(task.path().join("children")).ok()?;
        children
            .split_whitespace()
            .any(|pid| pid == child.to_string())
            .then(|| std::fs::read_to_string(task.path().join("comm")).ok())
            .flatten()
            .map(|name| name.trim().to_string())
    })
}

/// Once the loop serves, the child, hooks, exec probes and exec dependency checks are
/// all started by the spawner thread, so the event loop's thread never waits for an exec
/// (issue 14). The first start, before the loop serves anything, is the loop thread's
/// own: `gsup run -- PROGRAM` then never makes the thread. The negative control is the
/// thread name itself: the loop's thread is `gsup`.
#[test]
fn starts_run_on_the_spawner_thread_once_the_loop_serves() {
    let marker = marker("spawner-thread");
    let (probe, dependency, hook, child) = (
        format!("{marker}-probe"),
        format!("{marker}-dependency"),
        format!("{marker}-hook"),
        format!("{marker}-child"),
    );
    let (gsup, _config) = gsup_configured(
        &format!(
            "[readiness]\nprobe = {{ exec = {} }}\ntimeout = \"60s\"\n\
             [[dependencies]]\nname = \"db\"\nexec = {}\n\
             [restart]\npolicy = \"always\"\nbackoff_initial = \"10ms\"\n\
             [shutdown]\ntimeout = \"60s\"\n\
             [[hooks]]\nphase = \"pre_stop\"\nexec = {}\n",
            forever_argv(&probe),
            forever_argv(&dependency),
            forever_argv(&hook)
        ),
        &["--", CHILD, "echo", &child, "forever"],
    );
    let gsup_pid = gsup.pid();
    let started_by = |what: &str, not: Option<i32>| {
        let mut found = None;
        let seen = wait_until(PATIENCE, || {
            found = processes_with(what, gsup_pid)
                .into_iter()
                .find(|&pid| Some(pid) != not)
                .and_then(|pid| Some((pid, creating_thread(gsup_pid, pid)?)));
            found.is_some()
        });
        assert!(seen, "`{what}` never ran as gsup's child: {}", gsup.stderr());
        found.unwrap_or_default()
    };
    let (first, thread) = started_by(&child, None);
    assert_eq!(thread, "gsup", "the first start, before the loop serves");
    assert_eq!(started_by(&probe, None).1, "gsup-spawner");
    assert_eq!(started_by(&dependency, None).1, "gsup-spawner");
    // A restart comes while the loop serves.
    // SAFETY: kill(2) with a pid this test found as gsup's child.
    unsafe { libc::kill(first, libc::SIGKILL) };
    assert_eq!(started_by(&child, Some(first)).1, "gsup-spawner", "a restart");
    gsup.signal(libc::SIGTERM);
    assert_eq!(started_by(&hook, None).1, "gsup-spawner");
    kill_gsup_and_expect_gone(gsup, &hook);
}

/// The HTTP server serves once the child's start has its answer (issue 14: the child
/// first): the first `/status` already names the child. Repeated, since the start and the
/// first request raced before.
#[test]
fn the_first_status_answered_already_names_the_child() {
    for round in 0..10 {
        let (mut gsup, addr, _config) = gsup_with_api("", &[CHILD, "forever"], &[]);
        let (status, _, body) = http(&addr, "GET", "/api/v1/shutdown/status", &[]);
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert!(
            answer["child"]["pid"].is_i64(),
            "round {round}: the first /status has no child pid: {body}"
        );
        gsup.signal(libc::SIGTERM);
        gsup.wait_exit(PATIENCE);
    }
}

/// Started with stdin, stdout and stderr closed (a careless init script), gsup puts
/// `/dev/null` there before it opens anything, as the Rust runtime did before `main`
/// (gsup has its own C entry point since issue 14): the child gets `/dev/null` on 0–2,
/// never one of gsup's own descriptors, and gsup still exits with the child's code.
#[test]
fn closed_standard_descriptors_become_dev_null_for_gsup_and_its_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("fds");
    let report = format!(
        // The shell's own fds, read from a subshell (a redirection would change them).
        "fds=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2); echo \"$fds\" > {}",
        out.display()
    );
    let mut gsup = start(
        cmd(
            "sh",
            &[
                "-c",
                "exec \"$0\" run --http off -- sh -c \"$1\" 0<&- 1>&- 2>&-",
                GSUP,
                &report,
            ],
        ),
        &[],
    );
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    let seen = std::fs::read_to_string(&out).expect("the child wrote its fds");
    assert_eq!(seen, "/dev/null\n/dev/null\n/dev/null\n");
}
