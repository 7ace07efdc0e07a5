//! gsup as PID 1 of a fresh pid namespace (`unshare --pid --fork --mount-proc`), as in a
//! container: it reaps every orphan and exits with its child's code.

mod common;

use common::*;

/// Whether this machine lets us make a pid namespace (root, unshare present); see
/// `prerequisite`.
fn can_unshare() -> bool {
    let works = have("unshare") && {
        let mut probe = start(cmd("unshare", &["--pid", "--fork", "--mount-proc", "true"]), &[]);
        shell_code(probe.wait_exit(PATIENCE)) == 0
    };
    prerequisite(
        works,
        "a pid namespace (`unshare --pid --fork --mount-proc`: root and util-linux)",
    )
}

fn in_new_pid_namespace(args: &[&str]) -> Running {
    let mut all = vec![
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        GSUP,
        "run",
        "--http",
        "off",
        "--",
    ];
    all.extend_from_slice(args);
    start(cmd("unshare", &all), &[])
}

/// The script runs as gsup's child inside the namespace: it leaves 200 orphans behind,
/// then counts zombies in the namespace until none is left (or a deadline passes).
const COUNT_ZOMBIES: &str = r#"
"$CHILD" orphans 200
n=-1
i=0
while [ $i -lt 1000 ]; do
  n=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
  [ "$n" -eq 0 ] && break
  i=$((i + 1))
  sleep 0.01
done
echo "zombies $n"
echo "init $(cut -d' ' -f1 /proc/1/stat) $(tr '\0' ' ' < /proc/1/cmdline)"
exit 5
"#;

#[test]
fn pid1_reaps_200_orphans_and_exits_with_the_child_code() {
    if !can_unshare() {
        return;
    }
    let script = COUNT_ZOMBIES.replace("\"$CHILD\"", CHILD);
    let mut ns = in_new_pid_namespace(&["sh", "-c", &script]);
    let zombies = ns.expect_line("zombies ");
    let init = ns.expect_line("init ");
    assert_eq!(
        shell_code(ns.wait_exit(PATIENCE)),
        5,
        "gsup as PID 1 exits with the child's code\n{}",
        ns.stderr()
    );
    assert!(
        init.starts_with("init 1 ") && init.contains("gsup"),
        "gsup must be PID 1: {init}"
    );
    assert_eq!(zombies, "zombies 0", "every orphan reaped\n{}", ns.stderr());
}

/// Negative control: with a PID 1 that never reaps orphans (the fixture itself), the
/// same 200 orphans stay zombies — so the test above can tell reaping from no orphans.
#[test]
fn negative_control_a_non_reaping_pid1_leaves_zombies() {
    if !can_unshare() {
        return;
    }
    let mut ns = start(
        cmd(
            "unshare",
            &[
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                CHILD,
                "orphans",
                "200",
                "echo",
                "done",
                "forever",
            ],
        ),
        &[],
    );
    ns.expect_line("done");
    let init = host_pid_of_namespace_init(ns.pid());
    assert!(
        wait_until(PATIENCE, || zombie_children(init) == 200),
        "a PID 1 that does not reap keeps 200 zombies, saw {}",
        zombie_children(init)
    );
}

#[test]
fn pid1_forwards_sigterm_and_exits_with_the_childs_code() {
    if !can_unshare() {
        return;
    }
    let mut ns = in_new_pid_namespace(&[CHILD, "exit-on", "TERM", "0", "pid", "echo", "ready", "forever"]);
    let pid_line = ns.expect_line("pid ");
    assert_eq!(field(&pid_line, "ppid"), 1, "child of PID 1: {pid_line}");
    ns.expect_line("ready");
    // unshare --fork forwards nothing; signal gsup (PID 1 inside) by its host pid.
    let gsup = host_pid_of_namespace_init(ns.pid());
    send_signal(gsup, libc::SIGTERM);
    ns.expect_line("got SIGTERM");
    assert_eq!(shell_code(ns.wait_exit(PATIENCE)), 0, "{}", ns.stderr());
}

/// unshare's forked child (gsup, PID 1 inside) as seen from the host.
fn host_pid_of_namespace_init(unshare: i32) -> i32 {
    let mut found = None;
    assert!(
        wait_until(PATIENCE, || {
            found = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                .ok()
                .and_then(|text| text.split_whitespace().next().and_then(|p| p.parse().ok()));
            found.is_some()
        }),
        "unshare has no child"
    );
    found.unwrap_or_default()
}
