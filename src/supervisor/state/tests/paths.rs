//! Unit tests of issue 13's paths: a missed watchdog, cleanup on every full shutdown,
//! terminal INT while gsup holds the terminal, fault and stop signals, hooks cut short,
//! and the stragglers of a shutdown.

use super::*;
use crate::config::{HookAction, HookConfig};

fn hook(phase: HookPhase) -> HookConfig {
    HookConfig {
        phase,
        name: "h".into(),
        action: HookAction::Exec(vec!["true".into()]),
        timeout: None,
        service: None,
    }
}

fn hooks_done(phase: HookPhase) -> Event {
    Event::HooksDone(PhaseResult {
        phase,
        outcome: Outcome::Ok,
        detail: "ok".into(),
    })
}

fn runs_hooks(actions: &[Action], phase: HookPhase) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::RunHooks { phase: p, .. } if *p == phase))
}

/// A started machine on a host with the given facts.
fn machine_with(host: Host, configure: impl FnOnce(&mut Config)) -> (State, Instant) {
    let mut config = Config::default();
    configure(&mut config);
    let mut state = State::new(config, host);
    let t0 = Instant::now();
    state.step(Event::Start, t0);
    state.step(Event::Spawned { pid: CHILD }, t0);
    (state, t0)
}

fn host(tty: bool, self_stop: bool) -> Host {
    Host {
        own_pid: GSUP,
        own_pgid: GSUP,
        tty,
        sockets: false,
        self_stop,
    }
}

fn from_terminal(signal: c_int) -> Event {
    Event::Signal { signal, sender: None }
}

// Item 3: a missed child watchdog is a failure.

#[test]
fn a_missed_watchdog_sends_watchdog_signal_and_exits_1_unmapped() {
    let (mut state, t0) = machine(|c| {
        c.notify.watchdog = Duration::from_secs(1);
        c.shutdown.exit_code_map.insert(0, 0);
        c.shutdown.exit_code_map.insert(1, 0);
    });
    let actions = state.step(Event::WatchdogMissed { generation: 1 }, t0 + ms(1000));
    assert_eq!(
        actions.first(),
        Some(&Action::Forward {
            target: Target::Child(CHILD),
            signal: state.config().notify.watchdog_signal
        })
    );
    state.step(exited(CHILD, ExitStatus::Code(0)), t0 + ms(1010));
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + ms(1010));
    assert_eq!(actions.last(), Some(&Action::Exit(1)), "{actions:?}");
}

#[test]
fn a_missed_watchdog_keeps_a_non_zero_code_and_on_failure_restarts_a_clean_exit() {
    let (mut state, t0) = machine(|c| c.notify.watchdog = Duration::from_secs(1));
    state.step(Event::WatchdogMissed { generation: 1 }, t0);
    state.step(exited(CHILD, ExitStatus::Signal(libc::SIGABRT)), t0);
    let actions = state.step(Event::Poll { tree_empty: true }, t0);
    assert_eq!(actions.last(), Some(&Action::Exit(128 + libc::SIGABRT)));

    let (mut state, t0) = machine(|c| {
        c.notify.watchdog = Duration::from_secs(1);
        c.restart.policy = RestartPolicy::OnFailure;
    });
    state.step(Event::WatchdogMissed { generation: 1 }, t0);
    let actions = crash(&mut state, t0, 0);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Arm(Timer::Restart, _))),
        "{actions:?}"
    );
    // The next generation starts with a clean slate.
    state.step(Event::Timer(Timer::Restart), t0 + Duration::from_secs(1));
    state.step(Event::Spawned { pid: CHILD + 1 }, t0 + Duration::from_secs(1));
    let actions = crash(&mut state, t0 + Duration::from_secs(2), 0);
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
}

#[test]
fn a_stale_watchdog_of_an_earlier_generation_changes_nothing() {
    let (mut state, t0) = machine(|c| c.notify.watchdog = Duration::from_secs(1));
    assert_eq!(state.step(Event::WatchdogMissed { generation: 7 }, t0), vec![]);
    assert_eq!(crash(&mut state, t0, 0).last(), Some(&Action::Exit(0)));
}

// Item 2: the watchdog clock starts when the child is ready, whatever made it ready.

#[test]
fn the_ready_child_is_the_one_the_watchdog_watches() {
    let (state, _) = machine(|_| {});
    assert_eq!(
        state.ready_child().map(|c| c.generation),
        Some(1),
        "no probe: ready once it runs"
    );
    let (mut state, t0) = machine(|c| c.readiness.probe = Some(crate::config::Probe::Tcp("127.0.0.1:1".into())));
    assert_eq!(state.ready_child(), None, "probe not passed yet");
    state.step(
        Event::Check(CheckResult {
            id: CheckId::Readiness,
            generation: 1,
            ok: true,
            latency: Duration::ZERO,
            detail: "ok".into(),
        }),
        t0,
    );
    assert_eq!(state.ready_child().map(|c| c.generation), Some(1));
}

// Item 4: the post-stop phases run on every full shutdown.

#[test]
fn the_childs_own_exit_runs_the_post_stop_hooks_then_exits_with_its_mapped_code() {
    let (mut state, t0) = machine(|c| {
        c.hooks = vec![hook(HookPhase::Database), hook(HookPhase::Cleanup)];
        c.shutdown.exit_code_map.insert(3, 4);
    });
    let actions = crash(&mut state, t0, 3);
    assert!(runs_hooks(&actions, HookPhase::Database), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Exit(_))), "{actions:?}");
    assert_eq!(state.lifecycle(), Lifecycle::Cleanup);
    assert_eq!(outcome(&state, PhaseName::CloseServer), Some(Outcome::Skipped));
    assert_eq!(outcome(&state, PhaseName::Force), Some(Outcome::Skipped));
    let actions = state.step(hooks_done(HookPhase::Database), t0 + ms(10));
    assert!(runs_hooks(&actions, HookPhase::Cleanup), "{actions:?}");
    let actions = state.step(hooks_done(HookPhase::Cleanup), t0 + ms(20));
    assert_eq!(actions.last(), Some(&Action::Exit(4)));
    assert_eq!(outcome(&state, PhaseName::Cleanup), Some(Outcome::Ok));
    assert_eq!(outcome(&state, PhaseName::Exit), Some(Outcome::Ok));
    assert!(!phases::failed(state.phases()), "{:?}", state.phases());
}

#[test]
fn a_shutdown_during_backoff_runs_the_post_stop_hooks() {
    let (mut state, t0) = machine(|c| {
        c.restart.policy = RestartPolicy::Always;
        c.hooks = vec![hook(HookPhase::Cleanup)];
    });
    crash(&mut state, t0, 6);
    let actions = state.step(term(), t0 + ms(10));
    assert!(actions.contains(&Action::Disarm(Timer::Restart)), "{actions:?}");
    assert!(runs_hooks(&actions, HookPhase::Cleanup), "{actions:?}");
    for name in [PhaseName::CloseServer, PhaseName::WaitExit, PhaseName::Force] {
        assert_eq!(outcome(&state, name), Some(Outcome::Skipped), "{name}");
    }
    let actions = state.step(hooks_done(HookPhase::Cleanup), t0 + ms(20));
    assert_eq!(actions.last(), Some(&Action::Exit(6)));
}

#[test]
fn a_forced_shutdown_during_backoff_runs_the_post_stop_hooks_in_the_force_window() {
    let (mut state, t0) = machine(|c| {
        c.restart.policy = RestartPolicy::Always;
        c.hooks = vec![hook(HookPhase::Cleanup)];
    });
    crash(&mut state, t0, 6);
    let now = t0 + ms(10);
    let actions = state.step(
        Event::Command(Command::Kill {
            reason: "ctl kill".into(),
        }),
        now,
    );
    assert!(
        actions.contains(&Action::RunHooks {
            phase: HookPhase::Cleanup,
            deadline: now + Duration::from_secs(5)
        }),
        "{actions:?}"
    );
    assert_eq!(
        state.step(hooks_done(HookPhase::Cleanup), now).last(),
        Some(&Action::Exit(6))
    );
}

#[test]
fn a_crash_loop_give_up_runs_the_post_stop_hooks_and_exits_1_on_a_clean_exit() {
    let (mut state, t0) = machine(|c| {
        c.restart.policy = RestartPolicy::Always;
        c.restart.max_restarts = 0;
        c.hooks = vec![hook(HookPhase::Cleanup)];
        c.shutdown.exit_code_map.insert(1, 0);
    });
    let actions = crash(&mut state, t0, 0);
    assert!(runs_hooks(&actions, HookPhase::Cleanup), "{actions:?}");
    assert_eq!(
        state.step(hooks_done(HookPhase::Cleanup), t0).last(),
        Some(&Action::Exit(1))
    );
}

#[test]
fn a_monitor_restart_that_reaches_the_limit_runs_the_post_stop_hooks() {
    let (mut state, t0) = machine(|c| {
        c.restart.max_restarts = 0;
        c.monitor.memory_threshold_mb = 1;
        c.monitor.sustain = Duration::ZERO;
        c.monitor.action = MonitorAction::Restart;
        c.hooks = vec![hook(HookPhase::Cleanup)];
    });
    state.step(
        Event::Sample {
            rss_bytes: 10 << 20,
            cpu_percent: 0.0,
        },
        t0,
    );
    state.step(exited(CHILD, ExitStatus::Code(0)), t0 + ms(10));
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + ms(10));
    assert!(runs_hooks(&actions, HookPhase::Cleanup), "{actions:?}");
    assert_eq!(
        state.step(hooks_done(HookPhase::Cleanup), t0 + ms(20)).last(),
        Some(&Action::Exit(1))
    );
}

// Item 5: Ctrl+C while gsup's own group holds the terminal.

#[test]
fn terminal_int_during_backoff_starts_the_shutdown() {
    let (mut state, t0) = machine_with(host(true, false), |c| c.restart.policy = RestartPolicy::Always);
    crash(&mut state, t0, 1);
    assert_eq!(state.lifecycle(), Lifecycle::Restarting);
    let actions = state.step(from_terminal(libc::SIGINT), t0 + ms(10));
    assert_eq!(actions.last(), Some(&Action::Exit(1)), "{actions:?}");
}

#[test]
fn terminal_int_while_stragglers_are_waited_for_starts_the_shutdown_and_a_second_forces() {
    let (mut state, t0) = machine_with(host(true, false), |_| {});
    state.step(exited(CHILD, ExitStatus::Code(0)), t0);
    state.step(Event::Poll { tree_empty: false }, t0);
    state.step(from_terminal(libc::SIGINT), t0 + ms(10));
    assert!(state.shutdown().is_some(), "the shutdown started");
    let actions = state.step(from_terminal(libc::SIGINT), t0 + ms(20));
    assert!(
        actions.contains(&Action::SignalTree { signal: libc::SIGKILL }),
        "forced: {actions:?}"
    );
}

#[test]
fn terminal_int_during_post_stop_hooks_forces() {
    let (mut state, t0) = machine_with(host(true, false), |c| c.hooks = vec![hook(HookPhase::Cleanup)]);
    crash(&mut state, t0, 0);
    let actions = state.step(from_terminal(libc::SIGINT), t0 + ms(10));
    assert!(actions.contains(&Action::KillHooks), "{actions:?}");
    assert_eq!(outcome(&state, PhaseName::Cleanup), Some(Outcome::Killed));
    assert_eq!(actions.last(), Some(&Action::Exit(0)), "{actions:?}");
}

#[test]
fn terminal_int_while_the_child_runs_is_still_the_childs() {
    let (mut state, t0) = machine_with(host(true, false), |_| {});
    let actions = state.step(from_terminal(libc::SIGINT), t0);
    assert_eq!(
        actions,
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGINT
        }]
    );
    assert!(state.shutdown().is_none());
}

// Item 9: fault signals sent by another process are forwarded.

#[test]
fn fault_signals_from_another_process_are_forwarded_never_the_kernels() {
    for signal in crate::signals::FAULT_SIGNALS {
        let (mut state, t0) = machine(|_| {});
        assert_eq!(
            state.step(signal_from(*signal, 4242), t0),
            vec![Action::Forward {
                target: Target::Group(CHILD),
                signal: *signal
            }],
            "{}",
            Sig(*signal)
        );
        assert_eq!(state.step(signal_from(*signal, GSUP), t0), vec![], "raised by gsup");
        assert_eq!(state.step(from_terminal(*signal), t0), vec![], "not sent by a process");
    }
}

// Item 10: TSTP/TTIN/TTOU without a terminal.

#[test]
fn tstp_without_a_terminal_is_forwarded_then_gsup_stops_with_sigstop() {
    for signal in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        let (mut state, t0) = machine_with(host(false, true), |_| {});
        assert_eq!(
            state.step(signal_from(signal, 4242), t0),
            vec![
                Action::Forward {
                    target: Target::Group(CHILD),
                    signal
                },
                Action::StopSelf(libc::SIGSTOP)
            ],
            "{}",
            Sig(signal)
        );
    }
}

#[test]
fn a_rewritten_ttin_sends_the_rewrite_and_still_stops_gsup() {
    let (mut state, t0) = machine_with(host(false, true), |c| {
        c.signals.rewrite.insert(libc::SIGTTIN, Some(libc::SIGTERM));
    });
    assert_eq!(
        state.step(signal_from(libc::SIGTTIN, 4242), t0),
        vec![
            Action::Forward {
                target: Target::Group(CHILD),
                signal: libc::SIGTERM
            },
            Action::StopSelf(libc::SIGSTOP)
        ]
    );
}

#[test]
fn as_pid_1_or_under_a_watchdog_tstp_is_only_forwarded() {
    let (mut state, t0) = machine_with(host(false, false), |_| {});
    assert_eq!(
        state.step(signal_from(libc::SIGTSTP, 4242), t0),
        vec![Action::Forward {
            target: Target::Group(CHILD),
            signal: libc::SIGTSTP
        }]
    );
}

// Item 14: a hook cut short by anything but its own bound is killed at the force.

#[test]
fn a_second_term_during_pre_stop_kills_the_hook() {
    let (mut state, t0) = machine(|c| c.hooks = vec![hook(HookPhase::PreStop)]);
    let actions = state.step(term(), t0);
    assert!(runs_hooks(&actions, HookPhase::PreStop), "{actions:?}");
    let actions = state.step(term(), t0 + ms(200));
    assert!(actions.contains(&Action::KillHooks), "{actions:?}");
    assert!(actions.contains(&Action::SignalTree { signal: libc::SIGKILL }));
}

#[test]
fn the_child_exiting_during_pre_stop_kills_the_hook_before_the_post_stop_phases() {
    let (mut state, t0) = machine(|c| c.hooks = vec![hook(HookPhase::PreStop), hook(HookPhase::Cleanup)]);
    state.step(term(), t0);
    state.step(exited(CHILD, ExitStatus::Code(0)), t0 + ms(100));
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + ms(100));
    let kill = actions.iter().position(|a| *a == Action::KillHooks);
    let cleanup = actions.iter().position(|a| {
        matches!(
            a,
            Action::RunHooks {
                phase: HookPhase::Cleanup,
                ..
            }
        )
    });
    assert!(kill.is_some() && kill < cleanup, "{actions:?}");
}

#[test]
fn a_second_term_during_a_post_stop_phase_kills_its_hook_and_opens_the_force_window() {
    let (mut state, t0) = machine(|c| c.hooks = vec![hook(HookPhase::Database), hook(HookPhase::Cleanup)]);
    state.step(term(), t0);
    state.step(exited(CHILD, ExitStatus::Code(0)), t0 + ms(100));
    let actions = state.step(Event::Poll { tree_empty: true }, t0 + ms(100));
    assert!(runs_hooks(&actions, HookPhase::Database), "{actions:?}");
    let now = t0 + ms(300);
    let actions = state.step(term(), now);
    assert!(actions.contains(&Action::KillHooks), "{actions:?}");
    assert_eq!(outcome(&state, PhaseName::Database), Some(Outcome::Killed));
    assert!(
        actions.contains(&Action::RunHooks {
            phase: HookPhase::Cleanup,
            deadline: now + Duration::from_secs(5)
        }),
        "the rest share the force window: {actions:?}"
    );
    assert!(actions.contains(&Action::Arm(Timer::ForceDeadline, now + Duration::from_secs(5))));
}

// Item 15: stragglers of a shutdown get SIGKILL only at the graceful deadline.

#[test]
fn stragglers_after_the_childs_exit_in_a_shutdown_get_sigkill_only_at_the_deadline() {
    let (mut state, t0) = machine(|_| {});
    state.step(term(), t0);
    let actions = state.step(exited(CHILD, ExitStatus::Code(0)), t0 + ms(10));
    assert!(actions.contains(&Action::SignalTree { signal: libc::SIGTERM }));
    for n in 1..10 {
        let actions = state.step(Event::Poll { tree_empty: false }, t0 + ms(10 + 20 * n));
        assert_eq!(actions, vec![], "no SIGKILL before the deadline");
    }
    assert_eq!(state.lifecycle(), Lifecycle::Stopping);
    let deadline = t0 + Duration::from_secs(30);
    let actions = state.step(Event::Timer(Timer::GracefulDeadline), deadline);
    assert!(
        actions.contains(&Action::SignalTree { signal: libc::SIGKILL }),
        "{actions:?}"
    );
    assert_eq!(state.lifecycle(), Lifecycle::Killing);
    let actions = state.step(Event::Poll { tree_empty: true }, deadline + ms(5));
    assert_eq!(actions.last(), Some(&Action::Exit(0)));
    assert!(
        phases::failed(state.phases()),
        "a stop that needed SIGKILL is a failure"
    );
}

// Item 6: gsup_child_up follows every generation.

#[test]
fn a_generation_runs_until_the_last_one_exited() {
    let (mut state, t0) = machine(|_| {});
    assert!(state.generation_running());
    crash(&mut state, t0, 0);
    assert!(!state.generation_running());
}

#[test]
fn a_child_still_alive_timeout_after_a_missed_watchdog_gets_sigkill() {
    let (mut state, t0) = machine(|c| c.notify.watchdog = Duration::from_secs(1));
    let actions = state.step(Event::WatchdogMissed { generation: 1 }, t0);
    let kill_at = t0 + Duration::from_secs(30);
    assert!(
        actions.contains(&Action::Arm(Timer::WatchdogKill, kill_at)),
        "{actions:?}"
    );
    assert_eq!(
        state.step(Event::Timer(Timer::WatchdogKill), kill_at),
        vec![Action::Forward {
            target: Target::Child(CHILD),
            signal: libc::SIGKILL
        }]
    );
    // A later generation is never the one killed.
    let (mut state, t0) = machine(|c| {
        c.notify.watchdog = Duration::from_secs(1);
        c.restart.policy = RestartPolicy::Always;
    });
    state.step(Event::WatchdogMissed { generation: 1 }, t0);
    crash(&mut state, t0, 134);
    state.step(Event::Timer(Timer::Restart), t0 + Duration::from_secs(1));
    state.step(Event::Spawned { pid: CHILD + 1 }, t0 + Duration::from_secs(1));
    assert_eq!(
        state.step(Event::Timer(Timer::WatchdogKill), t0 + Duration::from_secs(30)),
        vec![]
    );
}
