//! Signal names and numbers, and which signals gsup forwards.
//!
//! Signals are plain `c_int`s here because the real-time ones (SIGRTMIN..SIGRTMAX) have no
//! variant in `nix::sys::signal::Signal`. Names are accepted as `15`, `TERM` or `SIGTERM`
//! (any case), and `RTMIN+3` / `SIGRTMIN+3` for real-time signals.

use std::fmt;

use libc::c_int;

/// Classic signal names in number order (Linux x86_64/aarch64 numbering).
const NAMES: &[(&str, c_int)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Aliases accepted on input only.
const ALIASES: &[(&str, c_int)] = &[("IOT", libc::SIGABRT), ("POLL", libc::SIGIO), ("CLD", libc::SIGCHLD)];

/// Synchronous fault signals. gsup blocks them and reads them from its signalfd: one sent
/// by another process (`kill -SEGV`) waits there and is forwarded, as dumb-init does; a
/// real fault in gsup is forced through by the kernel and crashes it (PDEATHSIG then
/// takes the child down), as in tini (DESIGN §4 Signals).
pub const FAULT_SIGNALS: &[c_int] = &[
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGSYS,
];

/// A signal name or number that gsup does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal `{0}` (expected a name such as TERM or SIGTERM, a number 1-{max}, or RTMIN+N)", max = rt_max())]
pub struct UnknownSignal(pub String);

pub fn rt_min() -> c_int {
    libc::SIGRTMIN()
}

pub fn rt_max() -> c_int {
    libc::SIGRTMAX()
}

/// Parses `15`, `TERM`, `SIGTERM`, `sigterm`, `RTMIN+2`, `SIGRTMAX-1`.
pub fn parse(text: &str) -> Result<c_int, UnknownSignal> {
    let unknown = || UnknownSignal(text.to_string());
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<c_int>() {
        // 32..SIGRTMIN are the C library's own (glibc's thread cancellation and setxid):
        // no name, nothing a program is sent.
        return if (1..=31).contains(&number) || (rt_min()..=rt_max()).contains(&number) {
            Ok(number)
        } else {
            Err(unknown())
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, number)) = NAMES.iter().chain(ALIASES).find(|(name, _)| *name == bare) {
        return Ok(number);
    }
    parse_realtime(bare).ok_or_else(unknown)
}

fn parse_realtime(bare: &str) -> Option<c_int> {
    let (base, rest) = if let Some(rest) = bare.strip_prefix("RTMIN") {
        (rt_min(), rest)
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        (rt_max(), rest)
    } else {
        return None;
    };
    // Digits only after the sign (no "RTMIN++3"), and no overflow on a huge offset.
    let offset = |digits: &str| -> Option<c_int> {
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let number = if rest.is_empty() {
        base
    } else if let Some(digits) = rest.strip_prefix('+') {
        base.checked_add(offset(digits)?)?
    } else if let Some(digits) = rest.strip_prefix('-') {
        base.checked_sub(offset(digits)?)?
    } else {
        return None;
    };
    (rt_min()..=rt_max()).contains(&number).then_some(number)
}

/// `SIGTERM`, `SIGRTMIN+3`, or `SIG<n>` for a number with no name.
pub fn name(signal: c_int) -> String {
    if let Some((name, _)) = NAMES.iter().find(|(_, number)| *number == signal) {
        return format!("SIG{name}");
    }
    if (rt_min()..=rt_max()).contains(&signal) {
        let offset = signal - rt_min();
        return if offset == 0 {
            "SIGRTMIN".to_string()
        } else {
            format!("SIGRTMIN+{offset}")
        };
    }
    format!("SIG{signal}")
}

/// A signal number that prints as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig(pub c_int);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.0))
    }
}

/// Every signal gsup forwards whoever sent it: 1-31 and the real-time ones, less KILL and
/// STOP (uncatchable), CHLD (gsup's own) and the fault signals (forwarded only when a
/// process sent them).
pub fn forwardable() -> Vec<c_int> {
    (1..=rt_max())
        .filter(|&signal| {
            !(signal == libc::SIGKILL
                || signal == libc::SIGSTOP
                || signal == libc::SIGCHLD
                || FAULT_SIGNALS.contains(&signal)
                || (32..rt_min()).contains(&signal))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!(parse("15"), Ok(libc::SIGTERM));
        assert_eq!(parse("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse("SIGTERM"), Ok(libc::SIGTERM));
        assert_eq!(parse("sigterm"), Ok(libc::SIGTERM));
        assert_eq!(parse("IOT"), Ok(libc::SIGABRT));
        assert_eq!(parse("RTMIN"), Ok(rt_min()));
        assert_eq!(parse("SIGRTMIN+2"), Ok(rt_min() + 2));
        assert_eq!(parse("RTMAX-1"), Ok(rt_max() - 1));
    }

    #[test]
    fn refuses_unknown_signals() {
        for bad in ["", "0", "-1", "65", "TERMINATE", "RTMIN+99", "RTMIN+", "SIG"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// A huge offset overflowed `c_int` (a panic in a debug build); a sign twice passed.
    #[test]
    fn realtime_offsets_never_overflow() {
        for bad in [
            "RTMAX--2147483648",
            "RTMIN+2147483647",
            "SIGRTMIN-2147483648",
            "RTMIN++3",
            "RTMAX- 1",
            "RTMINé",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// Found by the property test below: `32` parsed, but its name `SIG32` did not.
    #[test]
    fn the_c_librarys_reserved_signals_are_refused() {
        for number in 32..rt_min() {
            assert!(parse(&number.to_string()).is_err(), "{number} is the C library's");
        }
        assert_eq!(parse(&rt_min().to_string()), Ok(rt_min()));
        assert_eq!(parse("31"), Ok(31));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Outside input (config, flags, `--rewrite`): never a panic; a refusal names the
        /// text; what is accepted is a signal gsup can name and parse back.
        #[test]
        fn any_text_parses_or_is_refused_by_name(
            text in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "(?i)(SIG)?(RTMIN|RTMAX)[+-]{0,2}[0-9 ]{0,12}",
                "(?i)(SIG)?[A-Z]{1,7}",
                "[-+]?[0-9]{1,12}",
            ]
        ) {
            match parse(&text) {
                Ok(signal) => {
                    proptest::prop_assert!((1..=rt_max()).contains(&signal));
                    proptest::prop_assert_eq!(parse(&name(signal)), Ok(signal));
                }
                Err(err) => {
                    let message = err.to_string();
                    let quoted = format!("`{text}`");
                    proptest::prop_assert!(message.contains(&quoted), "{}", message);
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for signal in 1..=rt_max() {
            if (32..rt_min()).contains(&signal) {
                continue;
            }
            assert_eq!(parse(&name(signal)), Ok(signal), "{}", name(signal));
        }
    }

    #[test]
    fn forwardable_excludes_chld_kill_stop_and_faults() {
        let set = forwardable();
        for excluded in [
            libc::SIGCHLD,
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGABRT,
        ] {
            assert!(!set.contains(&excluded), "{}", name(excluded));
        }
        for included in [
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGWINCH,
            libc::SIGPIPE,
            rt_min(),
            rt_max(),
        ] {
            assert!(set.contains(&included), "{}", name(included));
        }
    }
}
