//! The tree's RSS and CPU over the last samples, for the overview page's sparklines
//! (GET `/process/history`, DESIGN §5a). A bounded ring: at most [`CAPACITY`] samples,
//! oldest first, so ten minutes at the default 1 s interval cost a few KiB.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::timefmt::{rfc3339_millis, seconds};

/// DESIGN §5a: gsup keeps at most this many samples in memory.
pub const CAPACITY: usize = 600;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: SystemTime,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
    pub processes: u64,
}

#[derive(Debug, Clone)]
pub struct History {
    interval: Duration,
    points: VecDeque<Point>,
}

impl History {
    pub fn new(interval: Duration) -> Self {
        History {
            interval,
            points: VecDeque::new(),
        }
    }

    /// Appends a sample, dropping the oldest beyond [`CAPACITY`]. The first sample's CPU
    /// is 0: a percentage needs two readings, whatever the sampler made of the first.
    pub fn push(&mut self, mut point: Point) {
        if self.points.is_empty() {
            point.cpu_percent = 0.0;
        }
        if self.points.len() == CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// The `/process/history` body (without `timestamp`).
    pub fn to_json(&self) -> Value {
        json!({
            "interval_seconds": seconds(self.interval),
            "samples": self.points.iter().map(|p| json!({
                "at": rfc3339_millis(p.at),
                "rss_bytes": p.rss_bytes,
                "cpu_percent": p.cpu_percent,
                "processes": p.processes,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The history as the supervisor and its snapshots share it: appended in place. It was
/// copied on write, and a published snapshot always held it, so every sample copied all
/// of it (24 KiB when full; on musl also an mmap, its page faults and a munmap: 7 % of
/// the monitor's CPU, issue 14). `/process/history` may now show a sample newer than the
/// rest of its snapshot, never an older one.
#[derive(Debug, Clone)]
pub struct SharedHistory(Arc<Mutex<History>>);

impl SharedHistory {
    pub fn new(interval: Duration) -> Self {
        SharedHistory(Arc::new(Mutex::new(History::new(interval))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        // Nothing panics while holding it; a poisoned history is still a history.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, point: Point) {
        self.lock().push(point);
    }

    pub fn to_json(&self) -> Value {
        self.lock().to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(n: u64, cpu: f64) -> Point {
        Point {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(n),
            rss_bytes: n,
            cpu_percent: cpu,
            processes: 1,
        }
    }

    #[test]
    fn keeps_the_newest_capacity_samples_oldest_first() {
        let mut history = History::new(Duration::from_secs(1));
        for n in 0..(CAPACITY as u64 + 25) {
            history.push(point(n, 5.0));
        }
        let kept: Vec<u64> = history.points.iter().map(|p| p.rss_bytes).collect();
        assert_eq!(kept.len(), CAPACITY);
        assert_eq!(kept.first(), Some(&25));
        assert_eq!(kept.last(), Some(&(CAPACITY as u64 + 24)));
    }

    #[test]
    fn the_first_sample_has_no_cpu_yet() {
        let mut history = History::new(Duration::from_millis(500));
        history.push(point(1, 80.0));
        history.push(point(2, 80.0));
        let body = history.to_json();
        assert_eq!(body["interval_seconds"], 0.5);
        assert_eq!(body["samples"][0]["cpu_percent"], 0.0);
        assert_eq!(body["samples"][1]["cpu_percent"], 80.0);
        assert_eq!(body["samples"][0]["at"], "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn empty_before_the_first_sample() {
        let body = History::new(Duration::from_secs(1)).to_json();
        assert_eq!(body["samples"], json!([]));
    }
}
