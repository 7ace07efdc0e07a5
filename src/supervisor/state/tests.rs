//! Unit tests of the state machine: `State::step` fed events at chosen instants.

use super::*;
use crate::config::Config;

/// Issue 13: every path honours the contract (systemd, cleanup on every exit, the
/// watchdog, signals as the peers do).
mod paths;

const CHILD: Pid = 100;
const GSUP: Pid = 10;

fn machine(configure: impl FnOnce(&mut Config)) -> (State, Instant) {
    machine_on(false, configure)
}

/// A started machine; `sockets`: gsup holds listening sockets (reloads work).
fn machine_on(sockets: bool, configure: impl FnOnce(&mut Config)) -> (State, Instant) {
    let mut config = Config::default();
    configure(&mut config);
    let host = Host {
        own_pid: GSUP,
        own_pgid: GSUP,
        tty: false,
        sockets,
        self_stop: false,
    };
    let mut state = State::new(config, host);
    let t0 = Instant::now();
    assert_eq!(state.step(Event::Start, t0), vec![Action::Spawn]);
    let spawned = state.step(Event::Spawned { pid: CHILD }, t0);
    // Only a readiness probe arms anything at a start: its startup_timeout.
    assert!(
        spawned.iter().all(|a| matches!(a, Action::Arm(Timer::Startup, _))),
        "{spawned:?}"
    );
    (state, t0)
}

fn term() -> Event {
    signal_from(libc::SIGTERM, 1)
}

fn signal_from(signal: c_int, sender: Pid) -> Event {
    Event::Signal {
        signal,
        sender: Some(sender),
    }
}

fn exited(pid: Pid, status: ExitStatus) -> Event {
    Event::ChildExited { pid, status }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn outcome(state: &State, name: PhaseName) -> Option<Outcome> {
    state.phases[name as usize].outcome
}

#[test]
fn a_started_child_is_running_and_ready() {
    let (state, _) = machine(|_| {});
    assert_eq!(state.lifecycle(), Lifecycle::Running);
    assert!(state.ready());
    assert_eq!(
        state.child().map(|c| (c.pid, c.pgid, c.generation)),
        Some((CHILD, CHILD, 1))
    );
}

#[test]
fn sigterm_sends_the_stop_signal_and_arms_the_graceful_deadline() {
    let (mut state, t0) = machine(|_| {});
    let actions = state.step(term(), t0);
    assert_eq!(
        actions,
        vec![
            Action::Arm(Timer::GracefulDeadline, t0 + Duration::from_secs(30)),
            Action::Forward {
                target: Target::Group(CHILD),
                signal: libc::SIGTERM
            },
            // Logged after the forward, so the log write does not delay it.
            Action::ShutdownStarted,
        ]
    );
    assert_eq!(state.lifecycle(), Lifecycle::Stopping);
    assert!(!state.ready(), "readiness turns off at once");
    assert_eq!(outcome(&state, PhaseName::StopAccepting), Some(Outcome::Ok));
    assert_eq!(outcome(&state, PhaseName::Drain), Some(Outcome::Skipped));
    assert_eq!(state.shutdown().map(|s| s.reason.as_str()), Some("signal SIGTERM"));
}

#[test]
fn drain_delay_holds_the_stop_signal_back() {
    let (mut state, t0) = machine(|c| c.shutdown.drain_delay = Duration::from_secs(5));
    let actions = state.step(term(), t0);
    assert!(actions.contains(&Action::Arm(Timer::DrainEnd, t0 + Duration::from_secs(5))));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Forward { .. })),
        "{actions:?}"
    );
    assert_eq!(state.lifecycle(), Lifecycle::Draining);
    let actions = state.step(Event::Timer(Timer::DrainEnd), t0 + Duration::from_secs(5));
    assert_eq!(
        actions,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGTERM
        }]
    );
    assert_eq!(outcome(&state, PhaseName::Drain), Some(Outcome::Ok));
}

#[test]
fn stop_signal_is_rewritten_and_forward_to_child_targets_the_child() {
    let (mut state, t0) = machine(|c| {
        c.signals.rewrite.insert(libc::SIGTERM, Some(libc::SIGQUIT));
        c.signals.forward_to = ForwardTo::Child;
    });
    let actions = state.step(term(), t0);
    assert!(
        actions.contains(&Action::Forward {
            target: Target::Child(CHILD),
            signal: libc::SIGQUIT
        }),
        "{actions:?}"
    );
}

#[test]
fn a_cooperative_child_exits_and_gsup_exits_with_its_code() {
    let (mut state, t0) = machine(|_| {});
    state.step(term(), t0);
    let actions = state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Code(0),
        },
        t0 + ms(50),
    );
    assert!(
        actions.contains(&Action::SignalTree { signal: libc::SIGTERM }),
        "rest of the tree: {actions:?}"
    );
    assert!(state.awaiting_tree());
    assert_eq!(outcome(&state, PhaseName::WaitExit), Some(Outcome::Ok));
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + ms(60));
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    assert_eq!(state.lifecycle(), Lifecycle::Exited);
    assert_eq!(outcome(&state, PhaseName::Force), Some(Outcome::Skipped));
    assert!(
        state.phases.iter().all(|row| row.outcome.is_some()),
        "{:?}",
        state.phases
    );
    assert_eq!(outcome(&state, PhaseName::Exit), Some(Outcome::Ok));
}

#[test]
fn the_graceful_deadline_kills_the_tree_and_the_exit_is_137() {
    let (mut state, t0) = machine(|_| {});
    state.step(term(), t0);
    let deadline = t0 + Duration::from_secs(30);
    let actions = state.step(Event::Timer(Timer::GracefulDeadline), deadline);
    assert_eq!(
        actions,
        vec![
            Action::KillHooks,
            Action::SignalTree { signal: libc::SIGKILL },
            Action::Arm(Timer::ForceDeadline, deadline + Duration::from_secs(5)),
        ]
    );
    assert_eq!(state.lifecycle(), Lifecycle::Killing);
    assert_eq!(outcome(&state, PhaseName::WaitExit), Some(Outcome::Timeout));
    state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Signal(libc::SIGKILL),
        },
        deadline + ms(1),
    );
    // Something forked meanwhile: SIGKILL again on every poll until the tree is gone.
    assert_eq!(
        state.step(Event::Poll { tree_empty: false }, deadline + ms(2)),
        vec![Action::SignalTree { signal: libc::SIGKILL }]
    );
    let actions = state.step(Event::Poll { tree_empty: true }, deadline + ms(3));
    assert_eq!(actions.last(), Some(&Action::Exit(137)));
    assert_eq!(outcome(&state, PhaseName::Force), Some(Outcome::Ok));
}

#[test]
fn the_end_of_the_force_window_exits_whatever_remains() {
    let (mut state, t0) = machine(|_| {});
    state.step(term(), t0);
    let deadline = t0 + Duration::from_secs(30);
    state.step(Event::Timer(Timer::GracefulDeadline), deadline);
    let actions = state.step(Event::Timer(Timer::ForceDeadline), deadline + Duration::from_secs(5));
    assert_eq!(
        actions.last(),
        Some(&Action::Exit(137)),
        "never hang on an unkillable child"
    );
    assert_eq!(outcome(&state, PhaseName::Force), Some(Outcome::Timeout));
}

#[test]
fn a_second_shutdown_signal_forces() {
    let (mut state, t0) = machine(|_| {});
    state.step(term(), t0);
    let actions = state.step(
        Event::Signal {
            signal: libc::SIGINT,
            sender: Some(1),
        },
        t0 + ms(10),
    );
    assert!(
        actions.contains(&Action::SignalTree { signal: libc::SIGKILL }),
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Disarm(Timer::GracefulDeadline)));
    assert_eq!(state.lifecycle(), Lifecycle::Killing);
    assert_eq!(outcome(&state, PhaseName::WaitExit), Some(Outcome::Killed));
    // A third one changes nothing.
    assert_eq!(state.step(term(), t0 + ms(20)), vec![]);
}

#[test]
fn without_repeat_forces_a_second_signal_is_forwarded() {
    let (mut state, t0) = machine(|c| c.signals.repeat_forces = false);
    state.step(term(), t0);
    let actions = state.step(term(), t0 + ms(10));
    assert_eq!(
        actions,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGTERM
        }]
    );
}

#[test]
fn a_kill_command_forces_at_once() {
    let (mut state, t0) = machine(|_| {});
    let actions = state.step(
        Event::Command(Command::Kill {
            reason: "http DELETE /shutdown".into(),
        }),
        t0,
    );
    assert!(
        actions.contains(&Action::SignalTree { signal: libc::SIGKILL }),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Forward { .. })),
        "no stop signal first: {actions:?}"
    );
    assert_eq!(outcome(&state, PhaseName::CloseServer), Some(Outcome::Skipped));
}

#[test]
fn other_signals_are_forwarded_rewritten_or_dropped() {
    let (mut state, t0) = machine(|c| {
        c.signals.rewrite.insert(libc::SIGHUP, None);
        c.signals.rewrite.insert(libc::SIGUSR1, Some(libc::SIGUSR2));
    });
    let usr1 = state.step(
        Event::Signal {
            signal: libc::SIGUSR1,
            sender: Some(1),
        },
        t0,
    );
    assert_eq!(
        usr1,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGUSR2
        }]
    );
    assert_eq!(
        state.step(
            Event::Signal {
                signal: libc::SIGHUP,
                sender: Some(1)
            },
            t0
        ),
        vec![]
    );
    let winch = state.step(
        Event::Signal {
            signal: libc::SIGWINCH,
            sender: None,
        },
        t0,
    );
    assert_eq!(
        winch,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGWINCH
        }]
    );
}

#[test]
fn a_signal_gsup_sent_itself_is_never_forwarded() {
    let (mut state, t0) = machine(|_| {});
    assert_eq!(
        state.step(
            Event::Signal {
                signal: libc::SIGPIPE,
                sender: Some(GSUP)
            },
            t0
        ),
        vec![]
    );
    assert_eq!(
        state.step(
            Event::Signal {
                signal: libc::SIGTERM,
                sender: Some(GSUP)
            },
            t0
        ),
        vec![]
    );
    assert!(state.shutdown().is_none());
}

#[test]
fn shutdown_on_empty_makes_a_pure_forwarder() {
    let (mut state, t0) = machine(|c| c.signals.shutdown_on.clear());
    assert_eq!(
        state.step(term(), t0),
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGTERM
        }]
    );
    assert!(state.shutdown().is_none());
}

#[test]
fn stragglers_of_an_exited_child_get_the_stop_signal_then_sigkill() {
    let (mut state, t0) = machine(|c| c.shutdown.timeout = Duration::from_secs(2));
    let actions = state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Code(3),
        },
        t0,
    );
    assert_eq!(
        actions,
        vec![
            Action::SignalTree { signal: libc::SIGTERM },
            Action::Arm(Timer::StragglerKill, t0 + Duration::from_secs(2))
        ]
    );
    assert_eq!(state.lifecycle(), Lifecycle::Stopping);
    assert_eq!(state.step(Event::Poll { tree_empty: false }, t0 + ms(10)), vec![]);
    let kill = state.step(Event::Timer(Timer::StragglerKill), t0 + Duration::from_secs(2));
    assert_eq!(kill[0], Action::SignalTree { signal: libc::SIGKILL });
    assert_eq!(state.lifecycle(), Lifecycle::Killing);
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + Duration::from_secs(2) + ms(5));
    assert_eq!(actions.last(), Some(&Action::Exit(3)));
}

#[test]
fn exit_code_map_applies_to_the_final_code() {
    let (mut state, t0) = machine(|c| {
        c.shutdown.exit_code_map.insert(143, 0);
    });
    state.step(term(), t0);
    state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Signal(libc::SIGTERM),
        },
        t0 + ms(1),
    );
    assert_eq!(
        state.step(Event::Poll { tree_empty: true }, t0 + ms(2)).last(),
        Some(&Action::Exit(0))
    );
}

fn crash(state: &mut State, at: Instant, code: i32) -> Vec<Action> {
    let pid = state.child().map(|c| c.pid).unwrap_or(CHILD);
    state.step(
        Event::ChildExited {
            pid,
            status: ExitStatus::Code(code),
        },
        at,
    );
    state.step(Event::Poll { tree_empty: true }, at)
}

#[test]
fn on_failure_restarts_with_doubling_backoff_then_gives_up() {
    let (mut state, t0) = machine(|c| {
        c.restart.policy = RestartPolicy::OnFailure;
        c.restart.backoff_initial = Duration::from_secs(1);
        c.restart.backoff_max = Duration::from_secs(3);
        c.restart.max_restarts = 3;
    });
    let mut now = t0;
    for expected in [1, 2, 3] {
        now += ms(100);
        let actions = crash(&mut state, now, 1);
        let delay = Duration::from_secs(expected);
        assert!(
            actions.contains(&Action::Arm(Timer::Restart, now + delay)),
            "{expected}: {actions:?}"
        );
        assert_eq!(state.lifecycle(), Lifecycle::Restarting);
        now += delay;
        assert_eq!(state.step(Event::Timer(Timer::Restart), now), vec![Action::Spawn]);
        state.step(
            Event::Spawned {
                pid: CHILD + expected as Pid,
            },
            now,
        );
    }
    assert_eq!(state.restarts(), 3);
    assert_eq!(state.generation(), 4);
    let actions = crash(&mut state, now + ms(100), 1);
    assert_eq!(actions.last(), Some(&Action::Exit(1)), "limit reached: give up");
}

#[test]
fn on_failure_leaves_a_clean_exit_alone_and_always_gives_up_with_1() {
    let (mut state, t0) = machine(|c| c.restart.policy = RestartPolicy::OnFailure);
    assert_eq!(crash(&mut state, t0, 0).last(), Some(&Action::Exit(0)));
    let (mut state, t0) = machine(|c| {
        c.restart.policy = RestartPolicy::Always;
        c.restart.max_restarts = 0;
    });
    assert_eq!(
        crash(&mut state, t0, 0).last(),
        Some(&Action::Exit(1)),
        "gave up on a clean exit: 1"
    );
}

#[test]
fn a_child_that_stays_up_for_the_window_resets_backoff() {
    let (mut state, t0) = machine(|c| {
        c.restart.policy = RestartPolicy::Always;
        c.restart.window = Duration::from_secs(10);
        c.restart.max_restarts = 100;
    });
    let first = crash(&mut state, t0 + ms(1), 0);
    assert!(first.contains(&Action::Arm(Timer::Restart, t0 + ms(1) + Duration::from_secs(1))));
    let later = t0 + Duration::from_secs(1) + ms(1);
    state.step(Event::Timer(Timer::Restart), later);
    state.step(Event::Spawned { pid: CHILD + 1 }, later);
    let second_exit = later + ms(1);
    assert!(
        crash(&mut state, second_exit, 0).contains(&Action::Arm(Timer::Restart, second_exit + Duration::from_secs(2)))
    );
    state.step(Event::Timer(Timer::Restart), second_exit + Duration::from_secs(2));
    state.step(Event::Spawned { pid: CHILD + 2 }, second_exit + Duration::from_secs(2));
    let long_after = second_exit + Duration::from_secs(30);
    let reset = crash(&mut state, long_after, 0);
    assert!(
        reset.contains(&Action::Arm(Timer::Restart, long_after + Duration::from_secs(1))),
        "{reset:?}"
    );
}

#[test]
fn a_shutdown_during_backoff_exits_at_once_with_the_last_code() {
    let (mut state, t0) = machine(|c| c.restart.policy = RestartPolicy::Always);
    crash(&mut state, t0, 6);
    let actions = state.step(term(), t0 + ms(10));
    assert!(actions.contains(&Action::Disarm(Timer::Restart)));
    assert_eq!(actions.last(), Some(&Action::Exit(6)));
}

#[test]
fn job_control_follows_the_child_only_with_a_terminal() {
    let (mut state, t0) = machine(|_| {});
    assert_eq!(
        state.step(
            Event::ChildStopped {
                pid: CHILD,
                signal: libc::SIGTSTP
            },
            t0
        ),
        vec![]
    );

    let mut state = State::new(
        Config::default(),
        Host {
            own_pid: GSUP,
            own_pgid: GSUP,
            tty: true,
            sockets: false,
            self_stop: false,
        },
    );
    state.step(Event::Start, t0);
    state.step(Event::Spawned { pid: CHILD }, t0);
    assert_eq!(
        state.step(
            Event::ChildStopped {
                pid: CHILD,
                signal: libc::SIGTSTP
            },
            t0
        ),
        vec![Action::StopSelf(libc::SIGTSTP)]
    );
    let cont = state.step(
        Event::Signal {
            signal: libc::SIGCONT,
            sender: Some(1),
        },
        t0,
    );
    assert_eq!(
        cont,
        vec![
            Action::Foreground(CHILD),
            Action::Forward {
                target: Target::Group(CHILD),
                signal: libc::SIGCONT
            }
        ]
    );
    // Ctrl+C that reached gsup's group from the terminal is the program's, not a shutdown.
    let ctrl_c = state.step(
        Event::Signal {
            signal: libc::SIGINT,
            sender: None,
        },
        t0,
    );
    assert_eq!(
        ctrl_c,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGINT
        }]
    );
    assert!(state.shutdown().is_none());
    let exit = state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Code(0),
        },
        t0,
    );
    assert_eq!(
        exit[0],
        Action::Foreground(GSUP),
        "the terminal goes back to gsup's group"
    );
}

#[test]
fn connection_draining_holds_the_stop_signal_until_nothing_is_in_flight() {
    let (mut state, t0) = machine(|c| {
        c.shutdown.drain_delay = Duration::from_secs(1);
        c.shutdown.connection_draining = true;
        c.shutdown.max_drain_time = Duration::from_secs(20);
    });
    state.step(Event::Connections { active: 3, inflight: 2 }, t0);
    state.step(term(), t0);
    let after_delay = t0 + Duration::from_secs(1);
    let actions = state.step(Event::Timer(Timer::DrainEnd), after_delay);
    assert_eq!(
        actions,
        vec![Action::Arm(Timer::DrainMax, after_delay + Duration::from_secs(20))]
    );
    assert!(state.awaiting_inflight());
    assert_eq!(state.lifecycle(), Lifecycle::Draining);
    let still = state.step(Event::Connections { active: 3, inflight: 1 }, after_delay + ms(100));
    assert!(still.is_empty(), "a request in flight holds the drain: {still:?}");
    let idle = state.step(Event::Connections { active: 3, inflight: 0 }, after_delay + ms(200));
    assert!(
        idle.contains(&Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGTERM
        }),
        "{idle:?}"
    );
    assert_eq!(outcome(&state, PhaseName::Drain), Some(Outcome::Ok));
    assert!(!state.awaiting_inflight());
    assert_eq!(state.connections(), Some(ConnectionCount { active: 3, inflight: 0 }));
    assert_eq!(
        state.connections_at_trigger(),
        Some(ConnectionCount { active: 3, inflight: 2 })
    );
}

#[test]
fn max_drain_time_ends_the_wait_without_failing_the_shutdown() {
    let (mut state, t0) = machine(|c| {
        c.shutdown.connection_draining = true;
        c.shutdown.max_drain_time = Duration::from_secs(2);
    });
    let actions = state.step(term(), t0);
    assert!(
        actions.contains(&Action::Arm(Timer::DrainMax, t0 + Duration::from_secs(2))),
        "drain_delay 0: wait at once"
    );
    state.step(Event::Connections { active: 1, inflight: 1 }, t0 + ms(100));
    let actions = state.step(Event::Timer(Timer::DrainMax), t0 + Duration::from_secs(2));
    assert!(actions.contains(&Action::Forward {
        target: Target::Group(CHILD),
        signal: libc::SIGTERM
    }));
    assert_eq!(outcome(&state, PhaseName::Drain), Some(Outcome::Timeout));
    state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Code(0),
        },
        t0 + Duration::from_secs(3),
    );
    state.step(Event::Poll { tree_empty: true }, t0 + Duration::from_secs(3));
    assert!(!phases::failed(state.phases()), "{:?}", state.phases());
}

#[test]
fn pre_stop_hooks_run_before_the_stop_signal_and_post_stop_after_the_exit() {
    use crate::config::{HookAction, HookConfig};
    let hook = |phase| HookConfig {
        phase,
        name: "h".into(),
        action: HookAction::Exec(vec!["true".into()]),
        timeout: None,
        service: None,
    };
    let (mut state, t0) = machine(|c| c.hooks = vec![hook(HookPhase::PreStop), hook(HookPhase::Cleanup)]);
    let deadline = t0 + Duration::from_secs(30);
    let actions = state.step(term(), t0);
    assert!(
        actions.contains(&Action::RunHooks {
            phase: HookPhase::PreStop,
            deadline
        }),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Forward { .. })),
        "no TERM before pre_stop: {actions:?}"
    );
    let done = |phase| {
        Event::HooksDone(PhaseResult {
            phase,
            outcome: Outcome::Ok,
            detail: "ok".into(),
        })
    };
    let actions = state.step(done(HookPhase::PreStop), t0 + ms(10));
    assert_eq!(
        actions,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGTERM
        }]
    );
    state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Code(0),
        },
        t0 + ms(20),
    );
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + ms(20));
    assert_eq!(
        actions.last(),
        Some(&Action::RunHooks {
            phase: HookPhase::Cleanup,
            deadline: t0 + ms(20) + Duration::from_secs(5)
        })
    );
    assert_eq!(outcome(&state, PhaseName::Database), Some(Outcome::Skipped));
    let actions = state.step(done(HookPhase::Cleanup), t0 + ms(30));
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    assert_eq!(outcome(&state, PhaseName::Cleanup), Some(Outcome::Ok));
}

#[test]
fn a_threshold_breaches_only_after_sustain_and_clears_when_back_under() {
    let (mut state, t0) = machine(|c| {
        c.monitor.memory_threshold_mb = 100;
        c.monitor.sustain = Duration::from_secs(2);
        c.monitor.action = MonitorAction::Shutdown;
    });
    let big = 200 * 1024 * 1024;
    assert!(
        state
            .step(
                Event::Sample {
                    rss_bytes: big,
                    cpu_percent: 1.0
                },
                t0
            )
            .is_empty()
    );
    assert!(
        state
            .step(
                Event::Sample {
                    rss_bytes: big,
                    cpu_percent: 1.0
                },
                t0 + ms(1900)
            )
            .is_empty()
    );
    // Back under resets the clock.
    state.step(
        Event::Sample {
            rss_bytes: 1,
            cpu_percent: 1.0,
        },
        t0 + ms(2000),
    );
    assert!(
        state
            .step(
                Event::Sample {
                    rss_bytes: big,
                    cpu_percent: 1.0
                },
                t0 + ms(2100)
            )
            .is_empty()
    );
    let actions = state.step(
        Event::Sample {
            rss_bytes: big,
            cpu_percent: 1.0,
        },
        t0 + ms(4100),
    );
    assert!(
        matches!(
            actions[0],
            Action::Breached {
                resource: Resource::Memory,
                ..
            }
        ),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| matches!(a, Action::Forward { .. })),
        "shutdown begins: {actions:?}"
    );
    assert_eq!(state.shutdown().map(|s| s.reason.as_str()), Some("monitor memory"));
    state.step(
        Event::ChildExited {
            pid: CHILD,
            status: ExitStatus::Code(0),
        },
        t0 + ms(4200),
    );
    let exit = state.step(Event::Poll { tree_empty: true }, t0 + ms(4200));
    assert_eq!(
        exit.last(),
        Some(&Action::Exit(1)),
        "a failure gsup detected: 1 for a clean child exit"
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let one = Duration::from_secs(1);
    let cap = Duration::from_secs(30);
    let delays: Vec<u64> = (1..=7).map(|n| backoff(one, cap, n).as_secs()).collect();
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(backoff(one, cap, 200), cap, "no overflow");
}

/// `/ready`'s reason names what readiness waits for (DESIGN §2): it said only
/// "readiness probe has not passed yet".
#[test]
fn the_not_ready_reason_names_the_probe_and_its_latest_answer() {
    use crate::config::Probe;
    let url = "http://127.0.0.1:3000/healthz";
    let (mut state, t0) = machine_on(false, |c| c.readiness.probe = Some(Probe::Http(url.into())));
    assert_eq!(state.not_ready(), Some(format!("waiting for http probe {url}")));
    let answer = |ok: bool, detail: String| {
        Event::Check(CheckResult {
            id: CheckId::Readiness,
            generation: 1,
            ok,
            latency: Duration::ZERO,
            detail,
        })
    };
    state.step(answer(false, format!("{url}: 503")), t0);
    assert_eq!(state.not_ready(), Some(format!("http probe {url}: 503")));
    state.step(answer(true, "200".into()), t0);
    assert_eq!(state.not_ready(), None);

    let (state, _) = machine_on(false, |c| c.readiness.probe = Some(Probe::Notify));
    assert_eq!(state.not_ready(), Some("waiting for READY=1 on NOTIFY_SOCKET".into()));
    let (mut state, t0) = machine_on(false, |c| c.readiness.probe = Some(Probe::Exec(vec!["./check".into()])));
    state.step(answer(false, "exit 3".into()), t0);
    assert_eq!(state.not_ready(), Some("exec probe ./check: exit 3".into()));
}

// ---- Reload (DESIGN §8) ----

const NEW: Pid = 200;

fn ready(generation: u64) -> Event {
    Event::Check(CheckResult {
        id: CheckId::Notify,
        generation,
        ok: true,
        latency: Duration::ZERO,
        detail: "READY=1".into(),
    })
}

/// A machine with sockets and a notify probe whose first child is ready, and a
/// reload whose new generation (`NEW`) has started.
fn reloading() -> (State, Instant) {
    let (mut state, t0) = machine_on(true, |c| c.readiness.probe = Some(crate::config::Probe::Notify));
    state.step(ready(1), t0);
    assert!(state.ready());
    assert_eq!(state.reload_refusal(), None);
    assert_eq!(
        state.step(Event::Command(Command::Reload), t0),
        vec![Action::ReloadStarted { id: 1 }, Action::Spawn]
    );
    assert_eq!(
        state.step(Event::Spawned { pid: NEW }, t0),
        vec![Action::Arm(Timer::ReloadStartup, t0 + Duration::from_secs(60))]
    );
    assert_eq!(state.lifecycle(), Lifecycle::Reloading);
    assert!(state.ready(), "/ready keeps its value during a reload");
    assert_eq!(
        state.child().map(|c| c.pid),
        Some(CHILD),
        "the old one serves until the new one is ready"
    );
    assert_eq!(state.newest().map(|c| c.pid), Some(NEW));
    (state, t0)
}

fn to_group(pgid: Pid, signal: c_int) -> Action {
    Action::Forward {
        target: Target::Group(pgid),
        signal,
    }
}

fn reload_done(actions: &[Action]) -> Option<&ReloadRecord> {
    actions.iter().find_map(|a| match a {
        Action::ReloadDone(record) => Some(record),
        _ => None,
    })
}

#[test]
fn a_reload_is_refused_without_sockets_and_the_reload_signal_is_then_forwarded() {
    let (mut state, t0) = machine(|_| {});
    assert!(state.reload_refusal().is_some_and(|why| why.contains("no sockets")));
    assert_eq!(state.step(Event::Command(Command::Reload), t0), vec![]);
    let hup = signal_from(libc::SIGHUP, 1);
    assert_eq!(state.step(hup, t0), vec![to_group(CHILD, libc::SIGHUP)]);
}

#[test]
fn the_reload_signal_reloads_when_there_are_sockets_and_a_second_one_is_refused() {
    let (mut state, t0) = machine_on(true, |_| {});
    let hup = signal_from(libc::SIGHUP, 1);
    // No probe: the new generation is ready once it runs, so the reload ends at once.
    assert_eq!(
        state.step(hup.clone(), t0),
        vec![Action::ReloadStarted { id: 1 }, Action::Spawn]
    );
    let actions = state.step(Event::Spawned { pid: NEW }, t0);
    assert!(
        reload_done(&actions).is_some_and(|r| r.ok && r.new_pid() == Some(NEW)),
        "{actions:?}"
    );
    assert_eq!(state.child().map(|c| c.pid), Some(NEW));
    // The old one got the stop signal; while it retires, HUP reloads again.
    assert!(actions.contains(&to_group(CHILD, libc::SIGTERM)));
    assert_eq!(
        state.step(hup, t0),
        vec![Action::ReloadStarted { id: 2 }, Action::Spawn]
    );
    assert_eq!(state.reload_refusal(), Some("a reload is already running"));
    assert_eq!(state.step(Event::Command(Command::Reload), t0), vec![]);
}

#[test]
fn a_ready_new_generation_takes_over_and_the_old_one_retires_without_the_restart_policy() {
    let (mut state, t0) = reloading();
    // Forwarded signals go to the newest generation.
    let usr1 = signal_from(libc::SIGUSR1, 1);
    assert_eq!(state.step(usr1, t0), vec![to_group(NEW, libc::SIGUSR1)]);
    // The old generation's READY=1 says nothing about the new one.
    assert_eq!(reload_done(&state.step(ready(1), t0)), None);
    assert_eq!(state.lifecycle(), Lifecycle::Reloading);

    let t1 = t0 + ms(700);
    let actions = state.step(ready(2), t1);
    assert!(actions.contains(&Action::Disarm(Timer::ReloadStartup)));
    assert!(actions.contains(&to_group(CHILD, libc::SIGTERM)));
    assert!(actions.contains(&Action::Arm(Timer::Retire, t1 + Duration::from_secs(30))));
    let record = reload_done(&actions).expect("an outcome").clone();
    assert!(record.ok);
    assert_eq!(
        (record.reload.old_pid, record.new_pid(), record.duration),
        (CHILD, Some(NEW), ms(700))
    );
    assert_eq!(record.reload.old_exit, None);
    assert_eq!(state.child().map(|c| (c.pid, c.generation)), Some((NEW, 2)));
    assert_eq!(state.lifecycle(), Lifecycle::Running);
    assert!(state.ready());

    // The old one exits: recorded, its group stopped, no restart, no exit.
    assert!(state.is_generation(CHILD));
    let t2 = t1 + ms(100);
    let actions = state.step(exited(CHILD, ExitStatus::Code(0)), t2);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Exit(_) | Action::Spawn | Action::SignalTree { .. }))
    );
    assert!(actions.contains(&Action::SignalGroup {
        pgid: CHILD,
        signal: libc::SIGTERM
    }));
    let old_exit = state.last_reload().and_then(|r| r.reload.old_exit).expect("old_exit");
    assert_eq!((old_exit.status, old_exit.at), (ExitStatus::Code(0), t2));
    assert!(!state.is_generation(CHILD));
    assert_eq!(state.last_exit(), None, "the retired one's exit is not the child's");
    assert_eq!(state.restarts(), 0, "a reload is not a restart");

    // Its group's stragglers get SIGKILL at the retire deadline, then nothing is armed.
    let actions = state.step(Event::Timer(Timer::Retire), t1 + Duration::from_secs(30));
    assert_eq!(
        actions,
        vec![
            Action::SignalGroup {
                pgid: CHILD,
                signal: libc::SIGKILL
            },
            Action::Disarm(Timer::Retire)
        ]
    );
}

#[test]
fn a_new_generation_not_ready_in_time_is_stopped_and_the_old_one_keeps_serving() {
    let (mut state, t0) = reloading();
    let t1 = t0 + Duration::from_secs(60);
    let actions = state.step(Event::Timer(Timer::ReloadStartup), t1);
    let record = reload_done(&actions).expect("an outcome");
    assert!(
        !record.ok && record.detail.contains("not ready within startup_timeout"),
        "{record:?}"
    );
    assert!(actions.contains(&to_group(NEW, libc::SIGTERM)));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::SignalTree { .. })),
        "{actions:?}"
    );
    assert_eq!(state.child().map(|c| c.pid), Some(CHILD));
    assert_eq!(state.lifecycle(), Lifecycle::Running);
    assert!(state.ready());
    // The failed one's exit changes nothing for the serving child.
    let actions = state.step(exited(NEW, ExitStatus::Signal(libc::SIGTERM)), t1);
    assert!(!actions.iter().any(|a| matches!(a, Action::Exit(_) | Action::Spawn)));
    assert_eq!(state.child().map(|c| c.pid), Some(CHILD));
    assert_eq!(
        state.last_reload().and_then(|r| r.reload.old_exit),
        None,
        "the old one did not exit"
    );
    // A late READY=1 from the failed generation is ignored.
    assert_eq!(state.step(ready(2), t1), vec![]);
}

#[test]
fn a_child_stopped_as_a_failed_start_cannot_be_reloaded() {
    let (mut state, t0) = machine_on(true, |c| c.readiness.probe = Some(crate::config::Probe::Notify));
    assert!(state.reload_refusal().is_some(), "never ready yet");
    let actions = state.step(Event::Timer(Timer::Startup), t0 + Duration::from_secs(60));
    assert!(actions.iter().any(|a| matches!(a, Action::Arm(Timer::StartupKill, _))));
    assert_eq!(
        state.reload_refusal(),
        Some("the child has not become ready since it started"),
        "it is being stopped: a restart's business, not a reload's"
    );
}

/// Found in review: a failed promoted generation armed `StartupKill`; it exited, the
/// policy restarted the child, and the stale timer then SIGKILLed the healthy new one.
#[test]
fn a_stale_startup_kill_never_hits_a_later_generation() {
    let (mut state, t0) = machine_on(true, |c| {
        c.readiness.probe = Some(crate::config::Probe::Notify);
        c.restart.policy = RestartPolicy::Always;
    });
    state.step(ready(1), t0);
    state.step(Event::Command(Command::Reload), t0);
    state.step(Event::Spawned { pid: NEW }, t0);
    state.step(exited(CHILD, ExitStatus::Code(0)), t0); // the old one goes: NEW takes over, not ready
    let t1 = t0 + Duration::from_secs(60);
    let actions = state.step(Event::Timer(Timer::ReloadStartup), t1);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Arm(Timer::StartupKill, _))),
        "{actions:?}"
    );
    let actions = state.step(exited(NEW, ExitStatus::Code(0)), t1);
    assert!(actions.contains(&Action::Disarm(Timer::StartupKill)), "{actions:?}");
    state.step(Event::Poll { tree_empty: true }, t1);
    assert_eq!(state.lifecycle(), Lifecycle::Restarting);
    let actions = state.step(Event::Timer(Timer::Restart), t1 + Duration::from_secs(1));
    assert_eq!(actions, vec![Action::Spawn]);
    state.step(Event::Spawned { pid: 300 }, t1 + Duration::from_secs(1));
    state.step(ready(3), t1 + Duration::from_secs(1));
    assert!(state.ready());
    // Even if the old timer fired anyway (it was disarmed), nothing is killed.
    let actions = state.step(Event::Timer(Timer::StartupKill), t1 + Duration::from_secs(30));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::SignalTree { .. })),
        "{actions:?}"
    );
    assert!(state.ready());
}

#[test]
fn a_new_generation_that_cannot_be_started_fails_the_reload_and_gsup_stays() {
    let (mut state, t0) = machine_on(true, |_| {});
    state.step(Event::Command(Command::Reload), t0);
    let actions = state.step(Event::SpawnFailed { code: 1 }, t0);
    let record = reload_done(&actions).expect("an outcome");
    assert!(!record.ok && record.new_pid().is_none(), "{record:?}");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Exit(_))),
        "not a start failure: {actions:?}"
    );
    assert_eq!(state.child().map(|c| c.pid), Some(CHILD));
    assert_eq!(state.lifecycle(), Lifecycle::Running);
}

#[test]
fn a_new_generation_that_exits_fails_the_reload() {
    let (mut state, t0) = reloading();
    let actions = state.step(exited(NEW, ExitStatus::Code(127)), t0);
    let record = reload_done(&actions).expect("an outcome");
    assert!(
        !record.ok && record.detail.contains("exited with code 127"),
        "{record:?}"
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Exit(_))));
    assert_eq!(state.child().map(|c| c.pid), Some(CHILD));
    assert!(!state.is_generation(NEW));
    assert_eq!(state.reload_refusal(), None, "the next reload may start");
}

#[test]
fn the_old_one_exiting_during_a_reload_hands_over_to_the_new_one_once_ready() {
    let (mut state, t0) = reloading();
    let actions = state.step(exited(CHILD, ExitStatus::Code(1)), t0);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Exit(_) | Action::SignalTree { .. })),
        "{actions:?}"
    );
    assert_eq!(state.child().map(|c| c.pid), Some(NEW));
    assert_eq!(state.lifecycle(), Lifecycle::Reloading);
    assert!(!state.ready(), "the new one has not passed its probe yet");
    let actions = state.step(ready(2), t0);
    let record = reload_done(&actions).expect("an outcome");
    assert!(record.ok);
    assert_eq!(record.reload.old_exit.map(|e| e.status), Some(ExitStatus::Code(1)));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Forward { .. })),
        "nothing old to stop: {actions:?}"
    );
    assert!(state.ready());
}

#[test]
fn after_the_old_one_exited_a_failing_new_one_goes_to_the_restart_policy() {
    let (mut state, t0) = reloading();
    state.step(exited(CHILD, ExitStatus::Code(0)), t0);
    let actions = state.step(exited(NEW, ExitStatus::Code(3)), t0);
    assert!(reload_done(&actions).is_some_and(|r| !r.ok));
    // restart = never: once the tree is gone gsup exits with the new one's code.
    assert!(state.awaiting_tree());
    let actions = state.step(Event::Poll { tree_empty: true }, t0);
    assert!(actions.contains(&Action::Exit(3)), "{actions:?}");
}

#[test]
fn a_shutdown_during_a_reload_fails_it_and_stops_the_new_generation_too() {
    let (mut state, t0) = reloading();
    let actions = state.step(term(), t0);
    assert!(reload_done(&actions).is_some_and(|r| !r.ok && r.detail.contains("shutdown")));
    assert!(actions.contains(&to_group(NEW, libc::SIGTERM)));
    assert!(actions.contains(&to_group(CHILD, libc::SIGTERM)));
    assert_eq!(state.reload_refusal(), Some("a shutdown is running"));
}
