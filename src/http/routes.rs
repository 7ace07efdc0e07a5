//! The routes of DESIGN §5. Every request is checked in this order: the `Host` check
//! (421, DNS rebinding); an unknown or disabled route → 404; then auth (401/403) for the
//! mutating ones; then preconditions (409). Every answer but `/metrics` is a JSON object,
//! and every value in one passes through `crate::redact`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Api, Caller, Control, MAX_BODY_BYTES, OwedAnswer, overview};
use crate::snapshot::{Snapshot, prestop_remaining, reload_json};
use crate::timefmt::{rfc3339_millis, seconds};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Status,
    Health,
    Ready,
    Alive,
    Process,
    Metrics,
    Config,
    Overview,
    /// GET `/`: the overview page for everyone (DESIGN §5a).
    Page,
    History,
    Shutdown,
    Kill,
    Prestop,
    Reload,
}

impl Route {
    fn mutating(self) -> bool {
        matches!(self, Route::Shutdown | Route::Kill | Route::Prestop | Route::Reload)
    }
}

/// The route for `method path`, or `None` (404) when unknown or disabled. HEAD finds the
/// GET route (the caller answers it without a body, or 405 for `/prestop`).
fn route(api: &Api, method: &Method, path: &str, caller: Caller) -> Option<Route> {
    let http = &api.loaded.config.http;
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let alias = match (method, path) {
        (&Method::GET, "/ready") => Some(Route::Ready),
        (&Method::GET, "/alive") => Some(Route::Alive),
        (&Method::GET, "/health") => Some(Route::Health),
        (&Method::GET, "/metrics") => Some(Route::Metrics),
        (&Method::GET, "/") => Some(Route::Page),
        (&Method::GET, "/overview") => Some(Route::Overview),
        (&Method::GET, "/process/history") => Some(Route::History),
        _ => None,
    };
    let found = alias.or_else(|| {
        let tail = path.strip_prefix(http.prefix.trim_end_matches('/'))?;
        match (method, tail) {
            (&Method::GET, "/status") => Some(Route::Status),
            (&Method::GET, "/health") => Some(Route::Health),
            (&Method::GET, "/ready") => Some(Route::Ready),
            (&Method::GET, "/alive") => Some(Route::Alive),
            (&Method::GET, "/process") => Some(Route::Process),
            (&Method::GET, "/metrics") => Some(Route::Metrics),
            (&Method::GET, "/config") => Some(Route::Config),
            (&Method::GET, "/overview") => Some(Route::Overview),
            (&Method::GET, "/process/history") => Some(Route::History),
            (&Method::POST, "/shutdown") => Some(Route::Shutdown),
            (&Method::DELETE, "/shutdown") => Some(Route::Kill),
            (&Method::GET, "/prestop") => Some(Route::Prestop),
            (&Method::POST, "/reload") => Some(Route::Reload),
            _ => None,
        }
    })?;
    let enabled = match found {
        Route::Ready => http.readiness,
        Route::Alive => http.liveness,
        // `gsup ctl prestop` works whatever `[http] prestop` says: it is the exec preStop.
        Route::Prestop => http.prestop || caller == Caller::ControlSocket,
        _ => true,
    };
    enabled.then_some(found)
}

pub async fn handle(
    request: Request<Incoming>,
    api: Arc<Api>,
    caller: Caller,
    owed: Arc<OwedAnswer>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = request.method() == Method::HEAD;
    let response = respond(request, api, caller, &owed).await;
    Ok(if head { without_body(response) } else { response })
}

/// HEAD: the GET answer's status and headers, its length announced, no body.
fn without_body(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    if let Some(length) = hyper::body::Body::size_hint(&body).exact() {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

async fn respond(
    request: Request<Incoming>,
    api: Arc<Api>,
    caller: Caller,
    owed: &OwedAnswer,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    if caller == Caller::Network && !host_allowed(&api.loaded.config.http, parts.headers.get(header::HOST)) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected request",
            "this Host is not served: use an IP address or localhost, or list the name in [http] allowed_hosts",
        );
    }
    let path = parts.uri.path().to_string();
    let Some(route) = route(&api, &parts.method, &path, caller) else {
        return error(
            StatusCode::NOT_FOUND,
            "not found",
            &format!("no route for {} {path}", parts.method),
        );
    };
    if parts.method == Method::HEAD && route.mutating() {
        // A HEAD acts on nothing: `/prestop` is the only GET that does.
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            "HEAD does not act; use GET",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if let Some(refused) = authorize(&api, route, caller, parts.headers.get(header::AUTHORIZATION)) {
        return refused;
    }
    // Bodies are not used by any route, but a client may send one: read it, bounded.
    match tokio::time::timeout(super::HEADER_READ_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload too large",
                &format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "request timeout",
                "the body did not arrive in time",
            );
        }
    }
    let reason_suffix = match caller {
        Caller::Network => format!("http {} {}", parts.method, short(&path)),
        Caller::ControlSocket => format!("ctl {}", ctl_name(route)),
    };
    let wait = parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| matches!(pair, "wait" | "wait=true" | "wait=1")));
    let ends_gsup = matches!(route, Route::Shutdown | Route::Kill);
    if ends_gsup {
        // gsup may be gone moments after this answer: it waits for it at exit.
        owed.mark();
    }
    let mut response = answer(&api, route, reason_suffix, parts.headers.get(header::ACCEPT), wait).await;
    if ends_gsup {
        // Closed once written, so the debt is paid as soon as the caller has the answer.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// DNS rebinding (DESIGN §5): while `[http] listen` is loopback, or whenever
/// `allowed_hosts` is set, `Host` must be missing, an IP literal (any port), `localhost`
/// (any port) or a listed name (port ignored).
fn host_allowed(http: &crate::config::HttpConfig, host: Option<&HeaderValue>) -> bool {
    let checked = http.listen.is_some_and(|addr| addr.ip().is_loopback()) || !http.allowed_hosts.is_empty();
    if !checked {
        return true;
    }
    let Some(host) = host else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let Some(name) = host_name(host.trim()) else {
        return false;
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || http
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// `Host` without its port: `h:80` → `h`, `[::1]:80` → `::1`; `None` when malformed.
fn host_name(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        return port_ok.then_some(inside);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => Some(name),
        Some(_) => None,
        None => Some(host),
    }
}

/// `/api/v1/shutdown/shutdown` → `/shutdown`, for shutdown reasons.
fn short(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i..])
}

fn ctl_name(route: Route) -> &'static str {
    match route {
        Route::Shutdown => "shutdown",
        Route::Kill => "kill",
        Route::Prestop => "prestop",
        Route::Reload => "reload",
        _ => "status",
    }
}

/// 401/403 for mutating routes reached over the network (DESIGN §5 Security).
fn authorize(api: &Api, route: Route, caller: Caller, given: Option<&HeaderValue>) -> Option<Response<Full<Bytes>>> {
    if !route.mutating() || caller == Caller::ControlSocket {
        return None;
    }
    let Some(token) = api.loaded.config.http.token.as_deref() else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "mutating endpoints are disabled: set GSUP_CONTROL_TOKEN or [http] token_file to enable them, or use `gsup ctl` on the control socket",
        ));
    };
    let presented = given.and_then(|v| bearer_token(v.as_bytes()));
    match presented {
        Some(candidate) if constant_time_eq(candidate, token.as_bytes()) => None,
        _ => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// case (RFC 9110 §11.1); one or more spaces follow it; surrounding whitespace is dropped.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme_end = value.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = value.split_at(scheme_end);
    let token = rest.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// Compares without an early exit, so the time taken says nothing about where the
/// first wrong byte is (the length may leak; tokens are long and random).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `wait`: POST `/reload?wait=true` answers once the reload has its outcome (`ctl reload`).
async fn answer(
    api: &Api,
    route: Route,
    reason: String,
    accept: Option<&HeaderValue>,
    wait: bool,
) -> Response<Full<Bytes>> {
    let snapshot = Arc::clone(&api.snapshot.borrow());
    let now = Instant::now();
    match route {
        Route::Status => json_response(StatusCode::OK, snapshot.status_json(now)),
        Route::Ready => {
            if snapshot.ready {
                json_response(
                    StatusCode::OK,
                    with_timestamp(json!({"status": "ready"}), &snapshot, now),
                )
            } else {
                let reason = snapshot.not_ready.as_deref().unwrap_or("not ready");
                let body = json!({"status": "not_ready", "reason": reason});
                json_response(StatusCode::SERVICE_UNAVAILABLE, with_timestamp(body, &snapshot, now))
            }
        }
        Route::Alive => {
            let (status, body) = if snapshot.alive() {
                (StatusCode::OK, json!({"status": "alive"}))
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "dead", "reason": "the child is not running and no restart is pending"}),
                )
            };
            json_response(status, with_timestamp(body, &snapshot, now))
        }
        Route::Health => {
            let (status, body) = health(&snapshot);
            json_response(status, with_timestamp(body, &snapshot, now))
        }
        Route::Process => json_response(StatusCode::OK, with_timestamp(process(&snapshot), &snapshot, now)),
        Route::Metrics => {
            let wants_json = accept
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json"));
            if wants_json {
                json_response(StatusCode::OK, api.metrics.render_json())
            } else {
                let mut response = Response::new(Full::new(Bytes::from(api.metrics.render_text())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::TEXT_CONTENT_TYPE),
                );
                response
            }
        }
        // The config's own tables at the top level, as `gsup check` shows them.
        Route::Config => json_response(StatusCode::OK, crate::config::render_json(&api.loaded)),
        Route::Overview if !overview::wants_html(accept.and_then(|v| v.to_str().ok())) => {
            let (_, health) = health(&snapshot);
            let body = overview::overview_json(&snapshot, health["status"].as_str().unwrap_or(""), now);
            json_response(StatusCode::OK, with_timestamp(body, &snapshot, now))
        }
        Route::Overview | Route::Page => page(api, &snapshot, now),
        Route::History => json_response(
            StatusCode::OK,
            with_timestamp(overview::history_json(&snapshot), &snapshot, now),
        ),
        Route::Shutdown => {
            let (reply, started) = oneshot::channel();
            let sent = api.control.send(Control::Shutdown {
                reason: reason.clone(),
                reply,
            });
            match (sent, started.await) {
                (Ok(()), Ok(true)) => accepted(json!({"status": "shutdown_started", "reason": reason}), &snapshot, now),
                (Ok(()), Ok(false)) => accepted(json!({"status": "in_progress"}), &snapshot, now),
                _ => gone(),
            }
        }
        Route::Kill => {
            let (reply, done) = oneshot::channel();
            let sent = api.control.send(Control::Kill {
                reason: reason.clone(),
                reply,
            });
            match (sent, done.await) {
                (Ok(()), Ok(())) => accepted(
                    json!({"status": "force_shutdown_started", "reason": reason}),
                    &snapshot,
                    now,
                ),
                _ => gone(),
            }
        }
        Route::Prestop => {
            let (reply, began) = oneshot::channel();
            let sent = api.control.send(Control::Prestop { reply });
            let Ok(since) = (match sent {
                Ok(()) => began.await.map_err(|_| ()),
                Err(_) => Err(()),
            }) else {
                return gone();
            };
            let drain_delay = api.loaded.config.shutdown.drain_delay;
            let wait = prestop_remaining(since, drain_delay, Instant::now());
            tokio::time::sleep(wait).await;
            let body = json!({"status": "prestop_done", "drain_delay_seconds": seconds(drain_delay), "waited_seconds": seconds(wait)});
            json_response(StatusCode::OK, with_timestamp(body, &snapshot, Instant::now()))
        }
        Route::Reload => reload(api, wait).await,
    }
}

/// POST `/reload`: 202 once the new generation is starting, or with `wait` 200 when it
/// took over and 500 when it failed (the old one still serving); 409 when refused.
async fn reload(api: &Api, wait: bool) -> Response<Full<Bytes>> {
    let (reply, answered) = oneshot::channel();
    let (outcome, result) = wait.then(oneshot::channel).unzip();
    if api.control.send(Control::Reload { reply, outcome }).is_err() {
        return gone();
    }
    let id = match answered.await {
        Ok(Ok(id)) => id,
        Ok(Err(why)) => return error(StatusCode::CONFLICT, "conflict", &why),
        Err(_) => return gone(),
    };
    let Some(result) = result else {
        let snapshot = Arc::clone(&api.snapshot.borrow());
        return accepted(json!({"status": "reload_started", "id": id}), &snapshot, Instant::now());
    };
    let Ok(record) = result.await else {
        return gone();
    };
    let snapshot = Arc::clone(&api.snapshot.borrow());
    let (status, word) = if record.ok {
        (StatusCode::OK, "reloaded")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "reload_failed")
    };
    let body = json!({"status": word, "reload": reload_json(&record, &snapshot.clock)});
    json_response(status, with_timestamp(body, &snapshot, Instant::now()))
}

fn health(snapshot: &Snapshot) -> (StatusCode, Value) {
    use crate::supervisor::state::{Lifecycle, Resource};
    let (child, mut status) = match (&snapshot.child, snapshot.state) {
        (Some(child), _) => (json!({"status": "up", "pid": child.pid}), "healthy"),
        (None, Lifecycle::Restarting) => (json!({"status": "restarting"}), "degraded"),
        (None, Lifecycle::Starting) => (json!({"status": "starting"}), "degraded"),
        (None, _) => (json!({"status": "down"}), "unhealthy"),
    };
    let mut checks = serde_json::Map::new();
    checks.insert("child".into(), child);
    if snapshot.monitoring {
        for (resource, threshold) in snapshot.thresholds {
            let state = if threshold.breached {
                "breached"
            } else if threshold.over_since.is_some() {
                "over"
            } else {
                "ok"
            };
            // A breach (action "warn", or one being acted on) degrades health.
            if threshold.breached && status == "healthy" {
                status = "degraded";
            }
            let (value_key, limit_key) = match resource {
                Resource::Memory => ("rss_mb", "threshold_mb"),
                Resource::Cpu => ("cpu_percent", "threshold_percent"),
            };
            checks.insert(
                resource.as_str().into(),
                json!({"status": state, value_key: threshold.value, limit_key: threshold.limit}),
            );
        }
    }
    for dependency in &snapshot.dependencies {
        let (name, critical) = (&dependency.name, dependency.critical);
        let entry = match &dependency.last {
            Some((result, at)) => {
                if !result.ok {
                    // A failing critical dependency: unhealthy; a non-critical one: degraded.
                    status = match (critical, status) {
                        (true, _) => "unhealthy",
                        (false, "healthy") => "degraded",
                        (false, other) => other,
                    };
                }
                json!({
                    "status": if result.ok { "ok" } else { "failing" },
                    "critical": critical,
                    "latency_seconds": result.latency.as_secs_f64(),
                    "checked_at": snapshot.clock.json(*at),
                    "detail": result.detail,
                })
            }
            None => json!({"status": "unknown", "critical": critical}),
        };
        checks.insert(name.clone(), entry);
    }
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, json!({"status": status, "checks": checks}))
}

/// `/process`: gsup itself and the child's tree, read from /proc.
fn process(snapshot: &Snapshot) -> Value {
    crate::snapshot::process_json(snapshot)
}

/// The overview page (DESIGN §5a), drawn from the JSON its script refreshes from.
fn page(api: &Api, snapshot: &Snapshot, now: Instant) -> Response<Full<Bytes>> {
    let (_, health) = health(snapshot);
    let data = overview::PageData {
        status: snapshot.status_json(now),
        overview: overview::overview_json(snapshot, health["status"].as_str().unwrap_or(""), now),
        process: process(snapshot),
        history: overview::history_json(snapshot),
        health,
    };
    let mut response = Response::new(Full::new(Bytes::from(overview::page(api, &data))));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(&overview::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

fn with_timestamp(mut body: Value, snapshot: &Snapshot, now: Instant) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert(
            "timestamp".into(),
            Value::String(rfc3339_millis(snapshot.clock.wall(now))),
        );
    }
    body
}

fn accepted(body: Value, snapshot: &Snapshot, now: Instant) -> Response<Full<Bytes>> {
    json_response(StatusCode::ACCEPTED, with_timestamp(body, snapshot, now))
}

/// The event loop is gone: gsup is exiting.
fn gone() -> Response<Full<Bytes>> {
    error(StatusCode::SERVICE_UNAVAILABLE, "exiting", "gsup is exiting")
}

fn error(status: StatusCode, error: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": error, "message": message, "timestamp": rfc3339_millis(std::time::SystemTime::now())});
    json_response(status, body)
}

/// Every JSON answer, its strings redacted (DESIGN §5: a dependency's URL with a
/// password in a `/health` detail, a command line in `/status` or `/process`).
fn json_response(status: StatusCode, mut body: Value) -> Response<Full<Bytes>> {
    crate::redact::json(&mut body);
    let mut text = body.to_string();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn bearer_in_any_case() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
    }

    #[test]
    fn host_names_without_ports() {
        assert_eq!(host_name("example.com:8080"), Some("example.com"));
        assert_eq!(host_name("localhost"), Some("localhost"));
        assert_eq!(host_name("[::1]:9090"), Some("::1"));
        assert_eq!(host_name("[::1]"), Some("::1"));
        assert_eq!(host_name("::1"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name("h:x"), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// No header value panics the parser; what it returns is never empty.
        #[test]
        fn bearer_parser_takes_any_bytes(value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Some(token) = bearer_token(&value) {
                proptest::prop_assert!(!token.is_empty());
            }
        }

        /// Any case of the scheme, any run of spaces: the token comes back whole.
        #[test]
        fn bearer_scheme_case_and_spacing(
            scheme in "[bB][eE][aA][rR][eE][rR]",
            spaces in " {1,3}",
            token in "[A-Za-z0-9._~+/-]{1,40}=*",
        ) {
            let value = format!("{scheme}{spaces}{token}");
            proptest::prop_assert_eq!(bearer_token(value.as_bytes()), Some(token.as_bytes()));
        }

        #[test]
        fn host_parser_takes_any_text(host in "\\PC{0,40}") {
            let _ = host_name(&host);
        }
    }

    #[test]
    fn short_names_the_last_segment() {
        assert_eq!(short("/api/v1/shutdown/shutdown"), "/shutdown");
        assert_eq!(short("/shutdown"), "/shutdown");
    }
}
