//! Real processes, read back from /proc. Every wait is a poll with a deadline. The tests
//! own their children (no reaper runs in a unit test), so they may kill and wait for them.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::thread::sleep;

use super::*;

/// A `sh -c SCRIPT` in its own process group, killed with its group and waited for when
/// dropped, so a failed assertion leaves nothing behind.
struct Shell(Child);

impl Shell {
    fn spawn(script: &str) -> Shell {
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Shell(child)
    }

    fn pid(&self) -> Pid {
        self.0.id() as Pid
    }
}

impl Drop for Shell {
    #[allow(clippy::disallowed_methods)] // a unit test owns this child; no reaper runs here
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Samples until `done` holds, every 20 ms for at most 10 s.
fn sample_until(
    sampler: &mut Sampler,
    roots: &[Root],
    exclude: &HashSet<Pid>,
    done: impl Fn(&TreeSample) -> bool,
) -> TreeSample {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sample = sampler.sample(roots, exclude);
        if done(&sample) {
            return sample;
        }
        assert!(Instant::now() < deadline, "gave up; last sample: {sample:#?}");
        sleep(Duration::from_millis(20));
    }
}

fn find(sample: &TreeSample, pid: Pid) -> &ProcessInfo {
    sample
        .processes
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in {sample:#?}"))
}

fn none() -> HashSet<Pid> {
    HashSet::new()
}

#[test]
fn a_shell_and_its_two_sleeps() {
    let shell = Shell::spawn("sleep 30 & sleep 30 & wait");
    let sh = shell.pid();
    let mut sampler = Sampler::new().expect("sampler");
    let sample = sample_until(&mut sampler, &[Root::tree(sh)], &none(), |s| {
        // Until both sleeps have exec'd (a forked sh is not yet `sleep 30`).
        // RSS can read 0 for an instant right after exec: wait for the new image too.
        s.processes.len() == 3
            && s.processes.iter().all(|p| p.pid == sh || p.command == "sleep 30")
            && s.processes.iter().all(|p| p.rss_bytes > 0)
    });

    let root = find(&sample, sh);
    assert_eq!(sample.processes[0].pid, sh, "the root comes first");
    assert_eq!(root.ppid, std::process::id() as Pid);
    assert_eq!(root.command, "sh -c sleep 30 & sleep 30 & wait");
    let mut sleeps: Vec<Pid> = sample.processes.iter().filter(|p| p.pid != sh).map(|p| p.pid).collect();
    sleeps.sort_unstable();
    assert_eq!(root.children, sleeps);

    let now = SystemTime::now();
    for p in &sample.processes {
        assert_eq!(p.pgid, sh, "{p:?}");
        assert!(p.rss_bytes > 0, "{p:?}");
        assert!(p.threads >= 1, "{p:?}");
        assert!(p.fds >= 3, "{p:?}");
        assert!(p.command.contains("sleep 30"), "{p:?}");
        assert_eq!(p.cpu_percent, 0.0, "first sample: {p:?}");
        // btime has whole seconds, so a start may read up to 1 s early, never late.
        let age = now.duration_since(p.started_at).expect("started in the past");
        assert!(age < Duration::from_secs(60), "{p:?}");
        if p.pid != sh {
            assert_eq!(p.ppid, sh);
            assert_eq!(p.command, "sleep 30");
            assert!(p.children.is_empty());
        }
    }
    assert_eq!(sample.totals.processes, 3);
    assert_eq!(
        sample.totals.rss_bytes,
        sample.processes.iter().map(|p| p.rss_bytes).sum::<u64>()
    );
    assert!(sample.totals.fds >= 9 && sample.totals.threads >= 3);
}

#[test]
fn the_entry_has_exactly_the_designed_keys() {
    let shell = Shell::spawn("sleep 30 & wait");
    let mut sampler = Sampler::new().expect("sampler");
    let sample = sample_until(&mut sampler, &[Root::tree(shell.pid())], &none(), |s| {
        s.processes.len() == 2
    });
    let entry = find(&sample, shell.pid()).to_json(SystemTime::now());
    let object = entry.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "children",
            "command",
            "cpu_percent",
            "fds",
            "pgid",
            "pid",
            "ppid",
            "rss_bytes",
            "started_at",
            "threads",
            "uptime_seconds"
        ]
    );
    assert!(entry["cpu_percent"].is_number() && entry["uptime_seconds"].is_f64());
    let children = entry["children"].as_array().expect("children array");
    assert_eq!(children.len(), 1);
    assert!(children[0].is_i64(), "pids, never objects");
    let started = entry["started_at"].as_str().expect("started_at");
    assert_eq!(started.len(), "2025-01-01T12:00:00.123Z".len(), "{started}");
    assert!(started.ends_with('Z') && started.as_bytes()[10] == b'T', "{started}");
    let uptime = entry["uptime_seconds"].as_f64().expect("uptime");
    assert!((0.0..60.0).contains(&uptime), "{uptime}");
}

#[test]
fn a_cpu_burner_shows_on_the_second_sample() {
    let shell = Shell::spawn("while :; do :; done");
    let roots = [Root::tree(shell.pid())];
    let mut sampler = Sampler::new().expect("sampler");
    let first = sample_until(&mut sampler, &roots, &none(), |s| s.processes.len() == 1);
    assert_eq!(first.processes[0].cpu_percent, 0.0, "no previous sample yet");
    // Poll: on 2 shared cores the burner may be starved for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        sleep(Duration::from_millis(300));
        let sample = sampler.sample(&roots, &none());
        if sample.totals.cpu_percent > 20.0 {
            break sample;
        }
        assert!(Instant::now() < deadline, "never busy: {sample:#?}");
    };
    let burner = &busy.processes[0];
    assert!(burner.cpu_percent > 20.0 && burner.cpu_percent < 150.0, "{burner:?}");
    assert!(burner.cpu_seconds > 0.0);
    assert!(busy.cpu_seconds_total >= burner.cpu_seconds);
    assert!(busy.cpu_seconds_total > first.cpu_seconds_total);
}

#[test]
fn reaped_children_are_counted_once() {
    // The burner's time moves into sh's cutime when sh reaps it: the monotonic total must
    // follow the live sum through that move, not add the burner's time a second time.
    let shell = Shell::spawn("(while :; do :; done) & b=$!; sleep 0.7; kill $b; wait $b; sleep 30");
    let roots = [Root::tree(shell.pid())];
    let mut sampler = Sampler::new().expect("sampler");
    let mut max_live: f64 = 0.0;
    let mut saw_burner = false;
    let mut previous_total = 0.0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sample = sampler.sample(&roots, &none());
        assert!(sample.cpu_seconds_total >= previous_total, "monotonic");
        previous_total = sample.cpu_seconds_total;
        max_live = max_live.max(sample.cpu_seconds_live);
        // sh, its burner subshell and sleep 0.7 while burning; sh and sleep 30 after.
        saw_burner |= sample.processes.len() == 3 && sample.cpu_seconds_live > 0.05;
        let done = sample.processes.len() == 2 && sample.processes.iter().any(|p| p.command == "sleep 30");
        // sh's cutime takes the burner's time when sh reaps it, a moment after it leaves
        // the walk: poll for it (the deadline below fails the test if it never comes).
        if saw_burner && done && sample.cpu_seconds_live > find(&sample, shell.pid()).cpu_seconds {
            break;
        }
        assert!(Instant::now() < deadline, "{sample:#?}");
        sleep(Duration::from_millis(50));
    }
    assert!(max_live > 0.05, "negative control: something burned ({max_live})");
    assert!(
        previous_total <= max_live + 0.1,
        "counted twice: total {previous_total} vs live {max_live}"
    );
}

#[test]
fn a_vanished_process_is_skipped() {
    let mut sampler = Sampler::new().expect("sampler");
    // Beyond any pid_max (at most 2^22): never a live process.
    let sample = sampler.sample(&[Root::tree(i32::MAX), Root::below(i32::MAX)], &none());
    assert!(sample.processes.is_empty());

    let shell = Shell::spawn("sleep 30 & exec sleep 0.3");
    let roots = [Root::tree(shell.pid())];
    let two = sample_until(&mut sampler, &roots, &none(), |s| {
        s.processes.len() == 2 && s.processes.iter().any(|p| p.command == "sleep 0.3")
    });
    assert_eq!(two.totals.processes, 2);
    // The root exits (a zombie until the Shell guard reaps it): its orphaned sleep 30
    // leaves this root's tree, and the zombie itself reads as `[sleep]`.
    let after = sample_until(&mut sampler, &roots, &none(), |s| {
        s.processes.iter().all(|p| p.command == "[sleep]")
    });
    assert!(after.processes.len() <= 1, "{after:#?}");
}

#[test]
fn excluded_subtrees_are_skipped() {
    let shell = Shell::spawn("sh -c 'sleep 30 & wait' & sleep 31 & wait");
    let sh = shell.pid();
    let roots = [Root::tree(sh)];
    let mut sampler = Sampler::new().expect("sampler");
    let is_inner = |p: &ProcessInfo| p.command.starts_with("sh -c sleep 30");
    // Until every fork has exec'd: a forked sh shows its parent's argv for a while.
    let full = sample_until(&mut sampler, &roots, &none(), |s| {
        let has = |c: &str| s.processes.iter().any(|p| p.command == c);
        s.processes.len() == 4 && has("sleep 30") && has("sleep 31") && s.processes.iter().any(is_inner)
    });
    let inner = full.processes.iter().find(|p| is_inner(p)).expect("inner sh");
    let exclude = HashSet::from([inner.pid]);
    let sample = sampler.sample(&roots, &exclude);
    let commands: Vec<&str> = sample.processes.iter().map(|p| p.command.as_str()).collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands.contains(&"sleep 31"), "{commands:?}");
    assert!(!find(&sample, sh).children.contains(&inner.pid));
    // Negative control: excluding the root leaves nothing.
    assert!(sampler.sample(&roots, &HashSet::from([sh])).processes.is_empty());
}

#[test]
fn below_skips_the_root_and_roots_are_deduplicated() {
    let shell = Shell::spawn("sleep 30 & wait");
    let me = std::process::id() as Pid;
    let roots = [Root::tree(shell.pid()), Root::below(me)];
    let mut sampler = Sampler::new().expect("sampler");
    let sample = sample_until(&mut sampler, &roots, &none(), |s| {
        s.processes
            .iter()
            .any(|p| p.command == "sleep 30" && p.ppid == shell.pid())
    });
    assert!(
        sample.processes.iter().all(|p| p.pid != me),
        "gsup itself is not in the tree"
    );
    let mut pids: Vec<Pid> = sample.processes.iter().map(|p| p.pid).collect();
    let count = pids.len();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), count, "each process once");
    assert!(pids.contains(&shell.pid()));
}

#[test]
fn the_own_entry_right_after_a_sample_is_the_same_as_alone() {
    let shell = Shell::spawn("sleep 30");
    let me = std::process::id() as Pid;
    let mut sampler = Sampler::new().expect("sampler");
    let alone = sampler.sample_self(&none()).expect("own entry");
    sampler.sample(&[Root::below(me)], &none());
    let after = sampler.sample_self(&none()).expect("own entry");
    assert!(after.children.contains(&shell.pid()), "{after:?}");
    assert_eq!(after.children, alone.children);
    assert_eq!(after.command, alone.command);
    let excluded = HashSet::from([shell.pid()]);
    sampler.sample(&[Root::below(me)], &none());
    let without = sampler.sample_self(&excluded).expect("own entry");
    assert!(!without.children.contains(&shell.pid()), "{without:?}");
}

#[test]
fn the_own_entry() {
    let shell = Shell::spawn("sleep 30");
    let mut sampler = Sampler::new().expect("sampler");
    let me = sampler.sample_self(&none()).expect("own entry");
    assert_eq!(me.pid, std::process::id() as Pid);
    assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
    assert!(me.threads >= 1 && me.fds >= 3 && me.rss_bytes > 0, "{me:?}");
    assert!(me.children.contains(&shell.pid()), "{me:?}");
    let excluded = sampler.sample_self(&HashSet::from([shell.pid()])).expect("own entry");
    assert!(!excluded.children.contains(&shell.pid()));
}

#[test]
fn the_full_scan_finds_the_same_children() {
    let shell = Shell::spawn("sleep 30 & sleep 30 & wait");
    let mut sampler = Sampler::new().expect("sampler");
    sample_until(&mut sampler, &[Root::tree(shell.pid())], &none(), |s| {
        s.processes.len() == 3
    });
    let mut from_files = Vec::new();
    let mut reader = Reader::new();
    assert!(reader.children_files, "this kernel has CONFIG_PROC_CHILDREN");
    reader.children(shell.pid(), true, &mut from_files);
    let mut from_scan = Vec::new();
    reader.children_files = false;
    reader.begin_pass();
    reader.children(shell.pid(), true, &mut from_scan);
    from_files.sort_unstable();
    from_scan.sort_unstable();
    assert_eq!(from_files.len(), 2);
    assert_eq!(from_files, from_scan);
}

#[test]
fn descendants_for_the_kill_path() {
    let shell = Shell::spawn("sleep 30");
    let me = std::process::id() as Pid;
    assert!(descendants(me, &none()).contains(&shell.pid()));
    assert!(!descendants(me, &HashSet::from([shell.pid()])).contains(&shell.pid()));
}

#[test]
fn stat_is_parsed_after_the_last_parenthesis() {
    let line = b"4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 31 7 9 20 0 3 0 123456 8192000 517 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
    let stat = parse_stat(line).expect("parses");
    assert_eq!(
        stat,
        Stat {
            comm: "a) b (c)".to_owned(),
            state: b'S',
            ppid: 17,
            pgid: 4242,
            utime: 250,
            stime: 31,
            cutime: 7,
            cstime: 9,
            threads: 3,
            starttime: 123456,
            rss_pages: 517,
            arg_start: 0,
        }
    );
    assert_eq!(parse_stat(b"4242 (truncated) S 1 2"), None);
    let own = fs::read("/proc/self/stat").expect("own stat");
    let own = parse_stat(&own).expect("own stat parses");
    assert_eq!(own.ppid, nix::unistd::getppid().as_raw());
    assert!(own.arg_start > 0, "field 48 is read: {own:?}");
}

#[test]
fn btime_and_cgroup_paths() {
    assert_eq!(
        parse_btime("cpu  1 2 3\nbtime 1735732800\nprocesses 9\n"),
        Some(1_735_732_800)
    );
    assert_eq!(parse_btime("cpu 1\n"), None);
    let mountinfo = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                     41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    assert_eq!(
        cgroup_dir("4:memory:/x\n0::/system.slice/app.service\n", mountinfo).as_deref(),
        Some("/sys/fs/cgroup/unified/system.slice/app.service")
    );
    assert_eq!(
        cgroup_dir("0::/\n", mountinfo).as_deref(),
        Some("/sys/fs/cgroup/unified")
    );
    assert_eq!(cgroup_dir("4:memory:/x\n", mountinfo), None, "cgroup v1 only");
    // Whatever this host has, it must not fail loudly; a usage is never zero.
    if let Some((_, current)) = cgroup_memory() {
        assert!(current > 0);
    }
}

/// The cost figure of DESIGN §7: CPU per sample of a 50-process tree (sh + 49 sleep),
/// from getrusage deltas. A measurement, not a test: run it in release with
/// `bench/sample_cost.sh`.
#[test]
#[ignore]
fn sample_cost_50_processes() {
    use nix::sys::resource::{UsageWho, getrusage};
    let shell = Shell::spawn("for i in $(seq 49); do sleep 120 & done; wait");
    let roots = [Root::tree(shell.pid()), Root::below(std::process::id() as Pid)];
    let mut sampler = Sampler::new().expect("sampler");
    sample_until(&mut sampler, &roots, &none(), |s| s.processes.len() == 50);
    let cpu = || {
        let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
        tv(usage.user_time()) + tv(usage.system_time())
    };
    let rounds = 200;
    let (start, wall) = (cpu(), Instant::now());
    let mut processes = 0;
    for _ in 0..rounds {
        processes += sampler.sample(&roots, &none()).processes.len() as u32;
    }
    let (per_sample, wall) = ((cpu() - start) / rounds as f64, wall.elapsed() / rounds);
    assert_eq!(processes, 50 * rounds, "the tree stayed whole");
    let start = cpu();
    for _ in 0..rounds {
        let _ = sampler.sample_self(&none());
    }
    let own = (cpu() - start) / rounds as f64;
    println!(
        "sample_cost: {per_sample:.0} us CPU per sample of 50 processes \
         (wall {wall:?}); own entry {own:.0} us; kernel {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
}

#[test]
fn kept_files_are_closed_once_their_processes_leave_the_tree() {
    let shell = Shell::spawn("sleep 30 & sleep 30 & wait");
    let roots = [Root::tree(shell.pid())];
    let mut sampler = Sampler::new().expect("sampler");
    let sample = sample_until(&mut sampler, &roots, &none(), |s| s.processes.len() == 3);
    assert_eq!(sample.processes.len(), 3);
    // sh's and both sleeps' stat files, and their children files, stay open.
    let kept = sampler.reader.kept.len();
    assert!(kept >= 3, "{kept} files kept");
    let second = sampler.sample(&roots, &none());
    assert_eq!(second.processes.len(), 3, "the kept files read the same tree");
    drop(shell); // SIGKILL to the group; sh is reaped, the sleeps go to init
    // A process that left the walk is looked at for a few more samples (MAX_MISSES, in
    // case the walk missed it); its files close once it is gone for good.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sampler.reader.kept.is_empty() {
        assert!(
            Instant::now() < deadline,
            "still open: {:?}",
            sampler.reader.kept.keys()
        );
        sampler.sample(&roots, &none());
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn fd_counts_follow_opens_and_closes_through_the_kept_directory() {
    let mut sampler = Sampler::new().expect("sampler");
    let me = std::process::id() as Pid;
    let fds = |sampler: &mut Sampler| sampler.sample_self(&none()).expect("own entry").fds;
    let _ = fds(&mut sampler); // keeps /proc/self/fd open from here on
    // Other tests open and close fds meanwhile: hold many, and look for the jump.
    let before = fds(&mut sampler);
    let held: Vec<fs::File> = (0..300)
        .filter_map(|_| fs::File::open("/proc/self/stat").ok())
        .collect();
    assert_eq!(held.len(), 300);
    let during = fds(&mut sampler);
    assert!(during >= before + 250, "{before} fds, then {during} with 300 more open");
    drop(held);
    let after = fds(&mut sampler);
    assert!(after + 250 <= during, "{during} fds, then {after} with 300 closed");
    assert!(
        sampler.reader.kept.contains_key(&Kept::Fds(me)),
        "the fd directory is kept open"
    );
}

/// Property tests (issue 12 item 6): /proc is outside input too (a comm is whatever a
/// process calls itself). No line panics the parsers; a well-formed line parses exactly.
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_stat_line_parses_or_is_skipped(
            line in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                "[0-9]{1,7} \\([^\n]{0,20}\\) [A-Z]( -?[0-9]{1,20}){0,50}\n?".prop_map(String::into_bytes),
            ]
        ) {
            let _ = parse_stat(&line);
        }

        #[test]
        fn numbers_parse_as_str_parse_reads_them(
            field in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..24),
                "[+-]?[0-9]{0,21}".prop_map(String::into_bytes),
            ]
        ) {
            let expected = std::str::from_utf8(&field).ok().and_then(|text| text.parse::<i64>().ok());
            prop_assert_eq!(parse_i64(&field), expected);
        }

        #[test]
        fn a_stat_line_with_any_comm_parses_exactly(
            comm in proptest::collection::vec(any::<u8>(), 0..16),
            state in any::<u8>().prop_filter("a field is never empty", |b| *b != b' '),
            ppid in 0..i32::MAX,
            pgid in 0..i32::MAX,
            numbers in proptest::collection::vec(0..i64::MAX as u64, 7),
            arg_start in 0..i64::MAX as u64,
        ) {
            let [utime, stime, cutime, cstime, threads, starttime, rss_pages] = numbers[..] else {
                unreachable!("seven numbers");
            };
            // Fields 1-52 of proc(5); the ones the parser does not read are filler.
            let mut fields: Vec<String> = (1..=52).map(|n| n.to_string()).collect();
            for (field, value) in [
                (4, ppid.to_string()),
                (5, pgid.to_string()),
                (14, utime.to_string()),
                (15, stime.to_string()),
                (16, cutime.to_string()),
                (17, cstime.to_string()),
                (20, threads.to_string()),
                (22, starttime.to_string()),
                (24, rss_pages.to_string()),
                (48, arg_start.to_string()),
            ] {
                fields[field - 1] = value;
            }
            let mut line = b"4242 (".to_vec();
            line.extend_from_slice(&comm);
            line.extend_from_slice(b") ");
            line.push(state);
            line.push(b' ');
            line.extend_from_slice(fields[3..].join(" ").as_bytes());
            line.push(b'\n');
            let parsed = parse_stat(&line);
            // A state byte of ')' would be the line's last parenthesis; every other one parses.
            if state != b')' {
                let expected = Stat {
                    comm: String::from_utf8_lossy(&comm).into_owned(),
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
                };
                prop_assert_eq!(parsed, Some(expected));
            }
        }

        #[test]
        fn any_proc_stat_and_cgroup_text_is_read_or_skipped(
            proc_stat in "[a-z]{0,6}( [0-9-]{0,22}){0,3}\n?(btime [0-9a-z -]{0,24}\n?)?",
            cgroup in "([0-9]{0,2}:[a-z,]{0,8}:[^\n]{0,20}\n){0,3}",
            mountinfo in "([^\n]{0,60}( - cgroup2 [^\n]{0,20})?\n){0,3}",
        ) {
            let _ = parse_btime(&proc_stat);
            let _ = cgroup_dir(&cgroup, &mountinfo);
        }
    }
}

/// Found in review: `/process` showed `-pHUNTER2` from a command line that `/config`
/// would have shown redacted.
#[test]
fn command_lines_are_shown_redacted() {
    let shell = Shell::spawn("exec python3 -c 'import time; time.sleep(30)' -pHUNTER2 --token tok3n");
    let mut sampler = Sampler::new().expect("sampler");
    let roots = [Root::tree(shell.pid())];
    let sample = sample_until(&mut sampler, &roots, &HashSet::new(), |s| {
        s.processes.iter().any(|p| p.command.contains("time.sleep"))
    });
    let command = &find(&sample, shell.pid()).command;
    assert!(!command.contains("HUNTER2") && !command.contains("tok3n"), "{command}");
    assert!(command.contains("-p***"), "{command}");
}
