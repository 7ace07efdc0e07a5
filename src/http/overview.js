"use strict";
// Redraws the server-rendered page every second from gsup's JSON endpoints. Values go
// in through textContent and setAttribute only: nothing from the server becomes markup.
(function () {
  const body = document.body;
  const prefix = body.dataset.prefix || "";
  const SPARK_WIDTH = 600, SPARK_HEIGHT = 100;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function setText(id, text) { const el = $(id); if (el) el.textContent = text; }
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function number(v) { return v === null || v === undefined ? "—" : String(v); }
  function bytes(v) {
    if (typeof v !== "number") return "—";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? v.toFixed(0) + " B" : v.toFixed(1) + " " + units[i];
  }
  function percent(v) { return typeof v === "number" ? v.toFixed(1) + " %" : "—"; }
  function duration(total) {
    if (typeof total !== "number" || !isFinite(total) || total < 0) return "—";
    const secs = Math.floor(total);
    const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60, s = secs % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return s === 0 ? m + "m" : m + "m " + s + "s";
    if (total < 10 && total % 1 !== 0) return total.toFixed(1) + "s";
    return s + "s";
  }
  function since(at) {
    const t = Date.parse(at);
    return isNaN(t) ? null : Math.max(0, (Date.now() - t) / 1000);
  }
  function ago(at) { const s = since(at); return s === null ? "" : duration(Math.floor(s)) + " ago"; }
  function plural(n, one, many) {
    if (typeof n !== "number") return null;
    return n === 1 ? "1 " + one : n + " " + many;
  }
  function tone(node, base, t) { node.className = t ? base + " " + t : base; }
  function stateTone(s) {
    if (s === "running") return "ok";
    if (["starting", "restarting", "reloading", "draining"].includes(s)) return "warn";
    if (["stopping", "killing", "cleanup", "exited"].includes(s)) return "bad";
    return "";
  }
  function healthTone(h) { return { healthy: "ok", degraded: "warn", unhealthy: "bad" }[h] || ""; }
  function outcomeTone(o) {
    if (["ok", "up"].includes(o)) return "ok-text";
    if (["skipped", "pending", "unknown"].includes(o)) return "muted";
    if (["running", "over", "starting", "restarting", "degraded"].includes(o)) return "warn-text";
    return "bad-text";
  }
  function cell(text, className) { return el("td", className, text); }

  function header(o, tree) {
    setText("command", tree.length ? tree[0].command : "no child");
    document.title = "gsup · " + (tree.length ? tree[0].command : "no child");
    const state = $("state");
    state.textContent = o.state;
    tone(state, "badge", stateTone(o.state));
    const ready = $("ready");
    ready.textContent = o.ready ? "ready" : "not ready";
    tone(ready, "badge", o.ready ? "ok" : "warn");
    const health = $("health");
    health.textContent = o.health;
    tone(health, "badge", healthTone(o.health));
    const reason = $("reason");
    reason.hidden = !o.ready_reason;
    reason.textContent = o.ready_reason ? "Not ready: " + o.ready_reason : "";
  }

  function cards(s, o) {
    const child = s.child, p = o.process;
    setText("pid", child ? number(child.pid) : "—");
    setText("generation", child ? "generation " + number(child.generation) : "no child running");
    setText("uptime", child ? duration(child.uptime_seconds) : "—");
    setText("gsup-uptime", "gsup up " + duration(o.uptime_seconds));
    setText("rss", bytes(p.rss_bytes));
    setText("processes", plural(p.processes, "process", "processes") || "monitoring off");
    setText("cpu", percent(p.cpu_percent));
    setText("connections", plural(s.active_connections, "connection", "connections") || "connections unknown");
    setText("restarts", number(s.restarts));
    const exit = s.last_exit;
    if (exit) {
      setText("last-exit", exit.signal ? exit.signal + " (" + number(exit.code) + ")" : "code " + number(exit.code));
      setText("last-exit-at", ago(exit.at));
    } else {
      setText("last-exit", "none");
      setText("last-exit-at", "no exit yet");
    }
    const reload = s.last_reload;
    if (reload) {
      setText("last-reload", reload.outcome);
      const when = ago(reload.started_at);
      setText("last-reload-at", reload.detail ? when + " · " + reload.detail : when);
    } else {
      setText("last-reload", "none");
      setText("last-reload-at", "no reload yet");
    }
  }

  function shutdown(s) {
    const section = $("shutdown"), sd = s.shutdown;
    section.hidden = !sd;
    if (!sd) return;
    const left = sd.deadline ? Math.max(0, (Date.parse(sd.deadline) - Date.now()) / 1000) : null;
    setText("shutdown-reason", sd.reason + " · deadline in " + duration(left === null ? null : Math.ceil(left)));
    const rows = (sd.phases || []).map((row) => {
      let elapsed, outcome;
      if (row.outcome) { elapsed = duration(row.duration_seconds); outcome = row.outcome; }
      else if (row.started_at) { elapsed = duration(Math.floor(since(row.started_at))); outcome = "running"; }
      else { elapsed = "—"; outcome = "pending"; }
      const tr = el("tr");
      tr.append(cell(row.name), cell(duration(row.timeout_seconds), "num"), cell(elapsed, "num"),
        cell(outcome, outcomeTone(outcome)));
      return tr;
    });
    $("phases").replaceChildren(...rows);
  }

  function sparkline(chart, values, top) {
    const line = chart.querySelector(".line"), area = chart.querySelector(".area");
    if (!values.length) { line.setAttribute("points", ""); area.setAttribute("points", ""); return; }
    const start = Math.max(0, SPARK_WIDTH - values.length);
    const points = values.map((v, i) => {
      const y = SPARK_HEIGHT - Math.min(1, Math.max(0, v / top)) * (SPARK_HEIGHT - 2);
      return (start + i).toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
    const end = start + values.length - 1;
    line.setAttribute("points", points);
    area.setAttribute("points", start.toFixed(1) + "," + SPARK_HEIGHT + " " + points + " " + end.toFixed(1) + "," + SPARK_HEIGHT);
  }

  function charts(h) {
    const samples = h.samples || [];
    const rss = samples.map((x) => x.rss_bytes), cpu = samples.map((x) => x.cpu_percent);
    const rssPeak = Math.max(0, ...rss), cpuPeak = Math.max(0, ...cpu);
    setText("rss-now", bytes(rss[rss.length - 1]));
    setText("rss-peak", "peak " + bytes(rss.length ? rssPeak : undefined));
    setText("cpu-now", percent(cpu[cpu.length - 1]));
    setText("cpu-peak", "peak " + percent(cpu.length ? cpuPeak : undefined));
    sparkline($("rss-chart"), rss, Math.max(rssPeak, 1024 * 1024) * 1.15);
    sparkline($("cpu-chart"), cpu, Math.max(cpuPeak, 100) * 1.05);
    const span = "last " + duration((h.interval_seconds || 1) * SPARK_WIDTH);
    document.querySelectorAll(".span-label").forEach((n) => { n.textContent = span; });
  }

  function tree(entries) {
    const depthOf = new Map();
    const rows = entries.map((p) => {
      const depth = depthOf.has(p.ppid) ? depthOf.get(p.ppid) + 1 : 0;
      depthOf.set(p.pid, depth);
      const tr = el("tr");
      const command = cell("", "cmd d" + Math.min(depth, 5));
      if (depth > 0) command.append(el("span", "tree", "└ "));
      command.append(document.createTextNode(p.command));
      tr.append(cell(number(p.pid), "num"), command, cell(bytes(p.rss_bytes), "num"),
        cell(percent(p.cpu_percent), "num"), cell(number(p.threads), "num hide-narrow"));
      return tr;
    });
    $("tree").replaceChildren(...rows);
    $("tree-empty").hidden = entries.length > 0;
    setText("tree-count", plural(entries.length, "process", "processes"));
  }

  function checkDetail(name, c) {
    if (name === "child") return c.pid ? "pid " + c.pid : "";
    if (name === "memory") return (typeof c.rss_mb === "number" ? c.rss_mb.toFixed(1) : "—") + " MiB of " + number(c.threshold_mb) + " MiB";
    if (name === "cpu") return percent(c.cpu_percent) + " of " + percent(c.threshold_percent);
    const parts = [];
    if (typeof c.critical === "boolean") parts.push(c.critical ? "critical" : "non-critical");
    if (typeof c.latency_seconds === "number") parts.push((c.latency_seconds * 1000).toFixed(0) + " ms");
    if (c.detail) parts.push(c.detail);
    return parts.join(" · ");
  }

  function checks(health) {
    const rows = Object.entries(health.checks || {}).map(([name, c]) => {
      const tr = el("tr");
      tr.append(cell(name), cell(c.status, outcomeTone(c.status)), cell(checkDetail(name, c), "muted"));
      return tr;
    });
    $("checks").replaceChildren(...rows);
  }

  async function get(path) {
    const answer = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    return answer.json();
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [s, o, p, h, health] = await Promise.all([
        get(prefix + "/status"), get("/overview"), get(prefix + "/process"),
        get("/process/history"), get(prefix + "/health"),
      ]);
      const entries = p.tree || [];
      header(o, entries);
      cards(s, o);
      shutdown(s);
      charts(h);
      tree(entries);
      checks(health);
      setText("updated", "live · updated " + (s.timestamp || "").slice(11, 19) + " UTC");
      document.documentElement.dataset.live = "1";
    } catch (error) {
      setText("updated", "gsup does not answer (" + error.message + "): retrying");
      document.documentElement.dataset.live = "0";
    } finally {
      busy = false;
    }
  }

  function controls() {
    const section = $("controls");
    if (!section || body.dataset.token !== "yes") return;
    section.hidden = false;
    const input = $("token"), message = $("control-msg");
    input.value = sessionStorage.getItem("gsup-token") || "";
    async function send(method, path, what) {
      const token = input.value.trim();
      if (!token) { message.textContent = "Enter the control token first."; input.focus(); return; }
      sessionStorage.setItem("gsup-token", token);
      message.textContent = what + "…";
      try {
        const answer = await fetch(path, { method, headers: { Authorization: "Bearer " + token } });
        const reply = await answer.json().catch(() => ({}));
        if (answer.status === 401) sessionStorage.removeItem("gsup-token");
        message.textContent = what + ": " + answer.status + " " + (reply.status || reply.message || "");
      } catch (error) {
        message.textContent = what + " failed: " + error.message;
      }
      refresh();
    }
    $("reload-button").addEventListener("click", () => send("POST", prefix + "/reload", "Reload"));
    $("shutdown-button").addEventListener("click", () => {
      if (confirm("Shut the service down? gsup stops it gracefully and exits.")) send("POST", prefix + "/shutdown", "Shutdown");
    });
  }

  controls();
  refresh();
  setInterval(refresh, 1000);
})();
