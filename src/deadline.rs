//! Deadline arithmetic that saturates instead of panicking (DESIGN §3).
//!
//! `Instant + Duration` panics on overflow. Config durations are at most 365 days, so no
//! sum of them overflows; but a deadline is also built from values gsup does not bound
//! itself (systemd's `WATCHDOG_USEC`), and a panic in the event loop would end the
//! supervision without a graceful stop. A deadline that cannot be represented is simply
//! far away.

use std::time::Duration;

/// Far enough to never arrive, near enough for every clock to represent.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

pub trait SaturatingAdd: Copy {
    fn checked(self, by: Duration) -> Option<Self>;

    /// `self + by`, or a far deadline when that cannot be represented.
    fn saturating_add(self, by: Duration) -> Self {
        match self.checked(by) {
            Some(later) => later,
            None => self.checked(FAR.min(by)).unwrap_or(self),
        }
    }
}

impl SaturatingAdd for std::time::Instant {
    fn checked(self, by: Duration) -> Option<Self> {
        self.checked_add(by)
    }
}

impl SaturatingAdd for tokio::time::Instant {
    fn checked(self, by: Duration) -> Option<Self> {
        self.checked_add(by)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::{Config, Probe, RestartPolicy};
    use crate::supervisor::phases::plan;
    use crate::supervisor::state::{Event, ExitStatus, Host, State, Timer};

    #[test]
    fn an_unrepresentable_deadline_is_far_away() {
        let now = Instant::now();
        assert_eq!(now.saturating_add(Duration::from_secs(5)), now + Duration::from_secs(5));
        let far = now.saturating_add(Duration::MAX);
        assert!(far >= now + Duration::from_secs(365 * 24 * 60 * 60), "{far:?}");
        let now = tokio::time::Instant::now();
        assert!(now.saturating_add(Duration::MAX) > now);
    }

    /// Every duration of the config at `Duration::MAX`: what the 365-day bound keeps out
    /// of a loaded config, fed to the state machine directly. A shutdown still runs.
    fn unbounded() -> Config {
        let mut config = Config::default();
        let max = Duration::MAX;
        let s = &mut config.shutdown;
        (s.timeout, s.force_timeout, s.drain_delay, s.max_drain_time) = (max, max, max, max);
        s.connection_draining = true;
        let p = &mut config.phases;
        (
            p.database.timeout,
            p.redis.timeout,
            p.external.timeout,
            p.cleanup.timeout,
        ) = (max, max, max, max);
        let r = &mut config.restart;
        (r.backoff_initial, r.backoff_max, r.window, r.startup_timeout) = (max, max, max, max);
        r.policy = RestartPolicy::Always;
        config.readiness.probe = Some(Probe::Notify);
        (config.readiness.interval, config.readiness.timeout) = (max, max);
        (config.monitor.interval, config.monitor.sustain, config.notify.watchdog) = (max, max, max);
        config
    }

    #[test]
    fn deadlines_past_any_clock_never_panic_the_state_machine() {
        let config = unbounded();
        assert!(plan(&config).iter().any(|row| row.timeout == Duration::MAX));
        let host = Host {
            own_pid: 10,
            own_pgid: 10,
            tty: false,
            sockets: false,
            self_stop: false,
        };
        let mut state = State::new(config, host);
        let t0 = Instant::now();
        let term = Event::Signal {
            signal: libc::SIGTERM,
            sender: Some(1),
        };
        let events = [
            Event::Start,
            Event::Spawned { pid: 100 },
            // A crash: the restart waits its (unbounded) backoff.
            Event::ChildExited {
                pid: 100,
                status: ExitStatus::Code(1),
            },
            Event::Timer(Timer::Restart),
            Event::Spawned { pid: 101 },
            Event::Timer(Timer::Startup),
            term,
            Event::Timer(Timer::DrainEnd),
            Event::Timer(Timer::DrainMax),
            Event::Timer(Timer::GracefulDeadline),
            Event::ChildExited {
                pid: 101,
                status: ExitStatus::Signal(libc::SIGKILL),
            },
            Event::Poll { tree_empty: true },
            Event::Timer(Timer::ForceDeadline),
        ];
        for (offset, event) in events.into_iter().enumerate() {
            state.step(event, t0 + Duration::from_millis(offset as u64));
        }
    }

    #[test]
    fn the_worst_case_shutdown_of_unbounded_parts_saturates() {
        let mut config = unbounded();
        config.http.prestop = true;
        let (total, parts) = crate::config::worst_case_shutdown(&config);
        assert_eq!(parts.len(), 3);
        assert_eq!(total, Duration::MAX);
    }
}
