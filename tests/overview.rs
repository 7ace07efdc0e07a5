//! DESIGN §5a: the overview page in a real headless Chromium (Debian's `chromium`)
//! against a real gsup and its process tree: what the page shows after its script ran,
//! with scripts off, during a shutdown, and that hostile values stay text. Plus the
//! page's headers and `/process/history`. Chromium is required: without it these tests
//! fail (`.ci/run` installs it).

mod common;

use std::path::Path;

use common::*;

const HOSTILE: &str = "<script>document.title='pwned'</script>";

/// Ends gsup the ordinary way (its children die of the forwarded SIGTERM).
fn stop(gsup: &mut Running) {
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

/// Headless, and quiet: no network of its own, no first-run or background work.
const HEADLESS: &str = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars";

fn require_chromium() {
    assert!(
        have("chromium"),
        "these tests need Debian's chromium (apt-get install -y chromium; .ci/run installs it)"
    );
}

/// Chromium, headless, with a profile of its own (removed with the returned dir).
#[allow(clippy::disallowed_methods)] // the test owns the browser it starts (no gsup reaper here)
fn chromium(extra: &[&str], url: &str) -> (String, tempfile::TempDir) {
    require_chromium();
    let profile = tempfile::tempdir().expect("a chromium profile dir");
    let profile_flag = format!("--user-data-dir={}", profile.path().display());
    let mut args = vec![
        // A hung browser must not hang the test: `timeout` ends it.
        "90",
        "chromium",
        profile_flag.as_str(),
        // Virtual time: the page's first refresh and a few of its 1 s timers run.
        "--virtual-time-budget=4000",
    ];
    args.extend(HEADLESS.split(' '));
    args.extend_from_slice(extra);
    args.push(url);
    let output = std::process::Command::new("timeout")
        .args(&args)
        .env("HOME", profile.path())
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed ({:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (String::from_utf8_lossy(&output.stdout).to_string(), profile)
}

/// The DOM after the page's script ran.
fn dom(url: &str) -> String {
    chromium(&["--dump-dom"], url).0
}

/// The DOM as a browser with scripts off shows it. `--dump-dom` needs script itself, so
/// this asks over the DevTools protocol for the document's HTML, which needs none.
fn dom_without_scripts(url: &str) -> String {
    in_a_tab(url, false, None, |devtools, session| {
        let document = devtools.call(Some(session), "DOM.getDocument", serde_json::json!({}));
        let html = devtools.call(
            Some(session),
            "DOM.getOuterHTML",
            serde_json::json!({"nodeId": document["root"]["nodeId"]}),
        );
        html["outerHTML"].as_str().expect("the document's HTML").to_string()
    })
}

/// Loads `url` in a fresh headless Chromium driven over the DevTools protocol
/// (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4), optionally in a
/// phone-sized viewport, and hands the tab's session to `inspect` once it loaded.
#[allow(clippy::disallowed_methods)] // the test owns the browser it starts (no gsup reaper here)
fn in_a_tab<T>(url: &str, scripts: bool, width: Option<u32>, inspect: impl FnOnce(&mut DevTools, &str) -> T) -> T {
    require_chromium();
    let profile = tempfile::tempdir().expect("a chromium profile dir");
    // fd 3: what chromium reads (our stdin pipe); fd 4: what it writes (our stdout pipe).
    let script = format!(
        "exec timeout 90 chromium {HEADLESS} --blink-settings=scriptEnabled={scripts} \
         --remote-debugging-pipe --user-data-dir='{}' 3<&0 4>&1 0</dev/null 1>/dev/null",
        profile.path().display()
    );
    let mut browser = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("HOME", profile.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut devtools = DevTools::new(&mut browser);
    let target = devtools.call(None, "Target.createTarget", serde_json::json!({"url": "about:blank"}));
    let attached = devtools.call(
        None,
        "Target.attachToTarget",
        serde_json::json!({"targetId": target["targetId"], "flatten": true}),
    );
    let session = attached["sessionId"].as_str().expect("a session id").to_string();
    if let Some(width) = width {
        devtools.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": true}),
        );
    }
    devtools.call(Some(&session), "Page.enable", serde_json::json!({}));
    devtools.call(Some(&session), "Page.navigate", serde_json::json!({"url": url}));
    devtools.wait_for_event("Page.loadEventFired");
    let found = inspect(&mut devtools, &session);
    let _ = devtools.call(None, "Browser.close", serde_json::json!({}));
    drop(devtools);
    let _ = browser.wait();
    found
}

/// A DevTools-protocol session over chromium's pipe.
struct DevTools {
    commands: std::process::ChildStdin,
    messages: std::sync::mpsc::Receiver<serde_json::Value>,
    next_id: u64,
}

impl DevTools {
    fn new(browser: &mut std::process::Child) -> DevTools {
        let mut replies = browser.stdout.take().expect("chromium's fd 4");
        let (sender, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(&mut replies);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice(&message) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        DevTools {
            commands: browser.stdin.take().expect("chromium's fd 3"),
            messages,
            next_id: 0,
        }
    }

    /// Sends a command and waits for its result (events meanwhile are dropped).
    fn call(&mut self, session: Option<&str>, method: &str, params: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        self.next_id += 1;
        let mut command = serde_json::json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        let mut bytes = command.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let id = self.next_id;
        let answer = self.next_where(method, |m| m["id"] == id);
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// The value of a JavaScript expression in the tab.
    fn evaluate(&mut self, session: &str, expression: &str) -> serde_json::Value {
        let result = self.call(
            Some(session),
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    fn wait_for_event(&mut self, event: &str) {
        self.next_where(event, |m| m["method"] == event);
    }

    fn next_where(&mut self, what: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if wanted(&message) => return message,
                Ok(_) => {}
                Err(error) => panic!("chromium never answered {what}: {error}"),
            }
        }
    }
}

/// gsup whose child runs a worker (a grandchild): (gsup, addr, child pid, worker pid).
fn supervised_tree(config: &str, child_args: &[&str]) -> (Running, String, tempfile::NamedTempFile, i32, i32) {
    let mut child = vec![CHILD, "pid"];
    child.extend_from_slice(child_args);
    child.extend_from_slice(&["grandchild", "alloc", "8", "forever", ";", "forever"]);
    let (mut gsup, addr, file) = gsup_with_api(config, &child, &[]);
    let child_pid = field(&gsup.expect_line("pid "), "pid");
    let worker = field(&gsup.expect_line("grandchild "), "grandchild");
    // The monitor has sampled the worker, twice (so the sparklines have a line).
    let sampled = wait_until(PATIENCE, || {
        let (_, _, history) = http(&addr, "GET", "/process/history", &[]);
        let (_, _, process) = http(&addr, "GET", "/api/v1/shutdown/process", &[]);
        json(&history)["samples"].as_array().is_some_and(|s| s.len() >= 2)
            && json(&process)["tree"]
                .as_array()
                .is_some_and(|tree| tree.iter().any(|p| p["pid"] == worker))
    });
    assert!(sampled, "the monitor never sampled the worker {worker}");
    (gsup, addr, file, child_pid, worker)
}

/// The facts the page must show, with scripts on or off.
fn assert_shows_the_tree(page: &str, child_pid: i32, worker: i32) {
    assert!(
        page.contains(&format!("id=\"pid\">{child_pid}<")),
        "the child's pid: {page}"
    );
    assert!(page.contains(">running</span>"), "the state: {page}");
    assert!(page.contains(">ready</span>"), "readiness: {page}");
    assert!(
        page.contains(&format!("<td class=\"num\">{worker}</td><td class=\"cmd d1\">")),
        "a row for the worker, one level below the child: {page}"
    );
    assert!(page.contains("id=\"rss-chart\""), "the RSS sparkline: {page}");
    assert!(page.contains("<polyline class=\"line\" points=\""), "{page}");
    assert!(page.contains("MiB"), "units: {page}");
}

#[test]
fn the_page_shows_the_child_and_its_worker_after_its_script_ran_and_without_scripts() {
    let config = format!("[process]\nenv = {{ GREETING = \"{HOSTILE}\", DB_PASSWORD = \"hunter2-secret\" }}\n");
    let (mut gsup, addr, _file, child_pid, worker) = supervised_tree(&config, &["echo", HOSTILE]);
    let url = format!("http://{addr}/");

    let live = dom(&url);
    assert!(
        live.contains("data-live=\"1\""),
        "the script refreshed the page: {live}"
    );
    assert!(live.contains("live · updated"), "{live}");
    assert_shows_the_tree(&live, child_pid, worker);

    let served = dom_without_scripts(&url);
    assert!(!served.contains("data-live"), "scripts were off: {served}");
    assert!(served.contains("scripts off: reload to refresh"), "{served}");
    assert_shows_the_tree(&served, child_pid, worker);

    // The command line argument and the env value show as text, never as markup: the
    // title the injected script would set is not there, and the text is.
    for page in [&live, &served] {
        assert!(!page.contains("pwned</title>"), "an injected script ran: {page}");
        assert!(!page.contains(HOSTILE), "a value became markup: {page}");
        let escaped = "&lt;script&gt;document.title='pwned'&lt;/script&gt;";
        assert!(
            page.matches(escaped).count() >= 3,
            "the argument (title, heading, tree row) and the env value show as text: {page}"
        );
        assert!(page.contains("<dt>GREETING</dt>"), "{page}");
        assert!(page.contains("<dt>DB_PASSWORD</dt><dd>***</dd>"), "redacted: {page}");
        assert!(!page.contains("hunter2"), "a secret was shown: {page}");
    }
    stop(&mut gsup);
}

#[test]
fn the_page_shows_the_shutdown_phases_while_a_slow_child_stops() {
    let config = "[shutdown]\ntimeout = \"60s\"\ndrain_delay = \"0s\"\n";
    let (mut gsup, addr, _file, child_pid, _worker) = supervised_tree(config, &["handle", "TERM"]);
    gsup.signal(libc::SIGTERM);
    gsup.expect_line("got SIGTERM");
    let waiting = wait_until(PATIENCE, || {
        let (_, _, status) = http(&addr, "GET", "/api/v1/shutdown/status", &[]);
        json(&status)["shutdown"]["phases"].as_array().is_some_and(|phases| {
            phases
                .iter()
                .any(|p| p["name"] == "wait_exit" && !p["started_at"].is_null())
        })
    });
    assert!(waiting, "gsup never reached wait_exit");

    let page = dom(&format!("http://{addr}/"));
    assert!(page.contains("data-live=\"1\""), "{page}");
    assert!(
        page.contains("<section id=\"shutdown\" class=\"panel\">"),
        "the shutdown panel shows: {page}"
    );
    assert!(page.contains(">stopping</span>"), "the state: {page}");
    assert!(page.contains("signal SIGTERM"), "the reason: {page}");
    for phase in ["stop_accepting", "drain", "wait_exit", "force", "exit"] {
        assert!(page.contains(&format!("<td>{phase}</td>")), "phase {phase}: {page}");
    }
    assert!(
        page.contains("<td>wait_exit</td><td class=\"num\">1m</td>"),
        "wait_exit with its bound: {page}"
    );
    assert!(page.contains(">running</td>"), "the phase under way: {page}");
    assert!(page.contains(">pending</td>"), "the phases to come: {page}");

    send_signal(child_pid, libc::SIGKILL);
    gsup.wait_exit(PATIENCE);
}

#[test]
fn no_horizontal_scroll_at_a_phones_width_with_long_values() {
    let long = format!("--an-argument-without-spaces-{}", "x".repeat(300));
    let config = format!("[process]\nenv = {{ LONG = \"{}\" }}\n", "y".repeat(300));
    let (mut gsup, addr, _file, _, _) = supervised_tree(&config, &["echo", &long]);
    let (scroll, client) = in_a_tab(&format!("http://{addr}/"), true, Some(375), |devtools, session| {
        let live = wait_until(PATIENCE, || {
            devtools.evaluate(session, "document.documentElement.dataset.live") == "1"
        });
        assert!(live, "the page's script never refreshed it");
        let widths = devtools.evaluate(
            session,
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]",
        );
        // The tables sit in boxes that could scroll on their own: they must not either.
        let tables = devtools.evaluate(
            session,
            "Math.max(0, ...[...document.querySelectorAll('.scroll')].map(e => e.scrollWidth - e.clientWidth))",
        );
        assert_eq!(tables, 0, "a table scrolls sideways by {tables} px");
        (widths[0].as_i64().unwrap_or(-1), widths[1].as_i64().unwrap_or(-1))
    });
    assert_eq!(client, 375, "the viewport is a phone's");
    assert!(
        scroll <= client,
        "the page scrolls sideways: {scroll} px wide at {client} px"
    );
    stop(&mut gsup);
}

#[test]
fn a_screenshot_of_the_page_is_a_real_image() {
    let (mut gsup, addr, _file, _, _) = supervised_tree("", &[]);
    let shots = tempfile::tempdir().expect("a dir for screenshots");
    for (name, size) in [("wide.png", "1280,1000"), ("phone.png", "375,1400")] {
        let path = shots.path().join(name);
        let screenshot = format!("--screenshot={}", path.display());
        let window = format!("--window-size={size}");
        chromium(&[&screenshot, &window], &format!("http://{addr}/"));
        assert_png(&path);
    }
    stop(&mut gsup);
}

fn assert_png(path: &Path) {
    let image = std::fs::read(path).unwrap_or_else(|error| panic!("no screenshot at {}: {error}", path.display()));
    assert!(
        image.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    // A blank or error page compresses to a few KiB; the page with its tables does not.
    assert!(image.len() > 20_000, "{} is only {} bytes", path.display(), image.len());
}

#[test]
fn the_page_is_self_contained_under_its_policy_and_json_stays_for_the_rest() {
    let (mut gsup, addr, _file, _, _) = supervised_tree("", &[]);
    for (path, accept) in [
        ("/", None),
        ("/", Some("application/json")),
        ("/overview", Some("text/html,application/xhtml+xml,*/*;q=0.8")),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let (status, head, body) = http(&addr, "GET", path, &headers);
        assert_eq!(status, 200, "{path} {accept:?}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
        let policy = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("no CSP: {head}"));
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-")
                && policy.contains("; style-src 'sha256-")
                && policy.ends_with("; connect-src 'self'; img-src data:"),
            "{policy}"
        );
        assert!(body.len() < 64 * 1024, "the page is {} bytes", body.len());
        assert_eq!(body.matches("<script>").count(), 1, "one inline script");
        assert_eq!(body.matches("<style>").count(), 1, "one inline style");
        assert!(!body.contains(" style="), "no style attributes");
        assert!(!body.contains("src=") && !body.contains("<link"), "no external assets");
        assert!(
            !body
                .split_whitespace()
                .any(|word| word.starts_with("on") && word.contains('=')),
            "no inline handlers"
        );
    }
    for accept in [None, Some("*/*"), Some("application/json")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let (status, head, body) = http(&addr, "GET", "/overview", &headers);
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase().contains("application/json"),
            "{accept:?}: {head}"
        );
        let overview = json(&body);
        assert_eq!(overview["state"], "running");
        assert!(
            overview["process"]["rss_bytes"].as_u64().is_some_and(|rss| rss > 0),
            "{body}"
        );
    }
    stop(&mut gsup);
}

#[test]
fn process_history_keeps_samples_oldest_first_and_is_empty_without_monitoring() {
    let (mut gsup, addr, _file) = gsup_with_api("[monitor]\ninterval = \"100ms\"\n", &[CHILD, "forever"], &[]);
    let mut history = serde_json::Value::Null;
    let filled = wait_until(PATIENCE, || {
        let (status, _, body) = http(&addr, "GET", "/process/history", &[]);
        assert_eq!(status, 200);
        history = json(&body);
        history["samples"].as_array().is_some_and(|s| s.len() >= 3)
    });
    assert!(filled, "{history}");
    assert_eq!(history["interval_seconds"], 0.1);
    let samples = history["samples"].as_array().cloned().unwrap_or_default();
    assert_eq!(samples[0]["cpu_percent"], 0.0, "the first sample has no CPU yet");
    let times: Vec<&str> = samples.iter().filter_map(|s| s["at"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");
    // The first sample may catch the child between fork and exec; the latest has it.
    let latest = &samples[samples.len() - 1];
    assert!(latest["rss_bytes"].as_u64().is_some_and(|rss| rss > 0), "{latest}");
    assert_eq!(latest["processes"], 1, "{latest}");
    // Also under the prefix.
    assert_eq!(http(&addr, "GET", "/api/v1/shutdown/process/history", &[]).0, 200);
    stop(&mut gsup);

    let (mut quiet, addr, _file) = gsup_with_api("[monitor]\nenabled = false\n", &[CHILD, "forever"], &[]);
    let (status, _, body) = http(&addr, "GET", "/process/history", &[]);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["samples"], serde_json::json!([]));
    stop(&mut quiet);
}

#[test]
fn a_token_brings_the_reload_and_shutdown_buttons() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token-for-the-page\n").expect("write token");
    let config = format!("[http]\ntoken_file = \"{}\"\n", token.display());
    let (mut with_token, addr, _file) = gsup_with_api(&config, &[CHILD, "forever"], &[]);
    let page = dom(&format!("http://{addr}/"));
    assert!(
        page.contains("<section id=\"controls\" class=\"panel\">"),
        "shown by the script: {page}"
    );
    assert!(page.contains("id=\"reload-button\"") && page.contains("id=\"shutdown-button\""));
    assert!(!page.contains("s3cret-token"), "the token is never in the page");
    stop(&mut with_token);

    let (mut without, addr, _file) = gsup_with_api("", &[CHILD, "forever"], &[]);
    let (_, _, page) = http(&addr, "GET", "/", &[]);
    assert!(!page.contains("id=\"controls\""), "no buttons without a token: {page}");
    stop(&mut without);
}

#[test]
fn the_buttons_send_the_token_and_shut_gsup_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token-for-the-page\n").expect("write token");
    let config = format!("[http]\ntoken_file = \"{}\"\n", token.display());
    let (mut gsup, addr, _file) = gsup_with_api(&config, &[CHILD, "exit-on", "TERM", "0", "forever"], &[]);
    let code = in_a_tab(&format!("http://{addr}/"), true, None, |devtools, session| {
        let message =
            |devtools: &mut DevTools| devtools.evaluate(session, "document.getElementById('control-msg').textContent");
        let press = |devtools: &mut DevTools, token: &str, button: &str| {
            // From a timer: a confirm() dialog would hold up the evaluation itself.
            let click = format!(
                "document.getElementById('token').value = '{token}'; setTimeout(() => document.getElementById('{button}').click(), 0); true"
            );
            devtools.evaluate(session, &click);
        };
        // A wrong token: 401, and the tab forgets it.
        press(devtools, "wrong", "reload-button");
        assert!(
            wait_until(PATIENCE, || message(devtools)
                .as_str()
                .is_some_and(|m| m.contains("401"))),
            "{}",
            message(devtools)
        );
        assert_eq!(
            devtools.evaluate(session, "sessionStorage.getItem('gsup-token')"),
            serde_json::Value::Null
        );
        // The right one reaches the route: a reload without sockets is refused (409),
        // and the token is kept for the tab.
        press(devtools, "s3cret-token-for-the-page", "reload-button");
        assert!(
            wait_until(PATIENCE, || message(devtools)
                .as_str()
                .is_some_and(|m| m.contains("409"))),
            "{}",
            message(devtools)
        );
        assert_eq!(
            devtools.evaluate(session, "sessionStorage.getItem('gsup-token')"),
            "s3cret-token-for-the-page"
        );
        // Shut down asks first; accepted, gsup stops the child and exits with its code.
        press(devtools, "s3cret-token-for-the-page", "shutdown-button");
        devtools.wait_for_event("Page.javascriptDialogOpening");
        devtools.call(
            Some(session),
            "Page.handleJavaScriptDialog",
            serde_json::json!({"accept": true}),
        );
        gsup.wait_code(PATIENCE)
    });
    assert_eq!(code, 0, "the child exited 0 on TERM: {}", gsup.stderr());
    assert!(gsup.stderr().contains("http POST /shutdown"), "{}", gsup.stderr());
}
