//! TEMPORARY stand-in for the metrics module written on branch `metrics`; replaced at merge.
#![allow(dead_code)]

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
pub struct Metrics;

impl Metrics {
    pub fn new() -> Self {
        Metrics
    }
    pub fn render_text(&self) -> String {
        String::new()
    }
    pub fn render_json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    pub fn child_started(&self) {}
    pub fn child_exited(&self, _code: i32) {}
    pub fn restarted(&self) {}
    pub fn set_ready(&self, _ready: bool) {}
    pub fn signal_forwarded(&self, _name: &str) {}
    pub fn zombie_reaped(&self) {}
    pub fn shutdown_succeeded(&self) {}
    pub fn shutdown_failed(&self) {}
    pub fn observe_shutdown_duration(&self, _seconds: f64) {}
    pub fn set_phase_duration(&self, _phase: &str, _seconds: f64) {}
}
