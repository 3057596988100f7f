// drdeck serve: the list of runs, or one run followed live by server-sent events.
// Everything a run says (titles, output, errors) is put on the page as text, never as markup.
"use strict";

const GLYPH = {succeeded: "✓", failed: "✗", skipped: "↷", running: "●", waiting: "◐",
               pending: "○", planned: "·", aborted: "✗", interrupted: "‖", refused: "✗"};
const OUTPUT_LINES = 400;  // the tail the page keeps; the journal keeps every line

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// 0.04s, 3.2s, 4m05s, 1h02m, 2d03h: as the terminal shows them
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 10) return seconds.toFixed(2) + "s";
  if (seconds < 60) return seconds.toFixed(1) + "s";
  const whole = Math.floor(seconds);
  let major, minor, units;
  if (whole < 3600) [major, minor, units] = [Math.floor(whole / 60), whole % 60, "ms"];
  else if (whole < 86400) [major, minor, units] = [Math.floor(whole / 3600), Math.floor(whole % 3600 / 60), "hm"];
  else [major, minor, units] = [Math.floor(whole / 86400), Math.floor(whole % 86400 / 3600), "dh"];
  return minor === 0 ? `${major}${units[0]}` : `${major}${units[0]}${String(minor).padStart(2, "0")}${units[1]}`;
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const whole = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return `${Math.floor(whole / 3600)}:${pad(Math.floor(whole % 3600 / 60))}:${pad(whole % 60)}`;
}

function when(iso) {
  if (!iso) return "-";
  const at = new Date(iso);
  return at.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function setLink(state, text) {
  const link = document.getElementById("link");
  link.dataset.state = state;
  link.textContent = text;
}

async function getJSON(path) {
  const answer = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(body.error || `${path}: HTTP ${answer.status}`);
  return body;
}

function forecastLine(forecast, rtoTarget) {
  if (!forecast) return null;
  const known = forecast.steps.some((s) => s.forecast_s !== null);
  if (!known) return "forecast: no earlier run to learn from";
  let text = `forecast ${duration(forecast.total_s)} (${duration(forecast.low_s)}..${duration(forecast.high_s)})`;
  const target = rtoTarget || forecast.rto_target_s;
  if (target) text += ` of ${duration(target)}`;
  const missing = forecast.without_history;
  if (missing) text += `, ${missing} step${missing === 1 ? "" : "s"} without history`;
  return text;
}

// --- the list ----------------------------------------------------------------------------

async function showList() {
  document.getElementById("heading").textContent = "runs";
  const main = document.getElementById("main");
  const draw = async () => {
    let runs;
    try {
      runs = await getJSON("/api/runs");
      setLink("live", "live · every 5 s");
    } catch (error) {
      setLink("lost", String(error.message));
      return;
    }
    const running = runs.filter((r) => r.status === "running");
    const ended = runs.filter((r) => r.status !== "running");
    main.replaceChildren(
      el("h2", {text: "In progress"}),
      running.length ? runTable(running) : el("p", {class: "quiet", text: "No run is in progress."}),
      el("h2", {text: "Recent"}),
      ended.length ? runTable(ended) : el("p", {class: "quiet", text: "No run has ended yet."}));
  };
  await draw();
  setInterval(draw, 5000);
}

function runTable(runs) {
  const head = el("tr", {}, ...["", "Run", "Mode", "Operator", "Started", "Took", "RTO", "Forecast"]
    .map((name) => el("th", {text: name})));
  const rows = runs.map((run) => el("tr", {"data-run": run.id, "data-status": run.status},
    el("td", {class: "glyph", text: GLYPH[run.status] || "?"}),
    el("td", {}, el("a", {href: `/runs/${encodeURIComponent(run.id)}`, text: run.title}),
       el("div", {class: "quiet", text: `${run.runbook} · ${run.id.slice(0, 8)}${run.dry_run ? " · dry run" : ""}`})),
    el("td", {text: run.mode}),
    el("td", {text: run.operator}),
    el("td", {text: when(run.started_at)}),
    el("td", run.unheard ? {class: "warn", title: run.unheard, text: "running, silent"}
      : {text: run.status === "running" ? "running" : duration(run.duration_s)}),
    el("td", {text: run.rto.measured_s !== null && run.rto.measured_s !== undefined
      ? `${duration(run.rto.measured_s)} of ${duration(run.rto.target_s)}`
      : run.rto.target_s ? `target ${duration(run.rto.target_s)}` : "-"}),
    el("td", {text: run.forecast && run.forecast.steps.some((s) => s.forecast_s !== null)
      ? duration(run.forecast.total_s) : "-"})));
  return el("table", {class: "runs"}, el("thead", {}, head), el("tbody", {}, ...rows));
}

// --- one run -----------------------------------------------------------------------------

function newStep(id, title, action, known) {
  return Object.assign({id, title, action, status: "pending", duration: null, error: null,
    reason: null, started: null, checks: [], command: "", progress: null, note: null}, known);
}

function epoch(iso) {
  return iso ? new Date(iso).getTime() / 1000 : null;
}

class Run {
  constructor(id) {
    this.id = id;
    this.steps = new Map();
    this.lines = [];
    this.milestones = [];
    this.finished = null;
    this.ended = null;
    this.started = null;
  }

  // the run as the journal's report has it, before (or without) its events
  fromReport(report) {
    const run = report.run;
    this.title = run.title; this.runbook = run.runbook; this.mode = run.mode;
    this.operator = run.operator; this.dryRun = run.dry_run;
    this.rtoTarget = run.rto.target_s; this.forecast = run.forecast;
    this.started = epoch(run.started_at);
    this.status = run.status;
    this.unheard = run.unheard || null;
    this.steps.clear();
    for (const step of report.steps) {
      this.steps.set(step.id, newStep(step.id, step.title, step.action, {
        status: step.status, duration: step.duration_s, error: step.error, reason: step.reason,
        started: epoch(step.started_at), command: step.command,
        checks: step.checks.map((c) => ({name: c.name, ok: c.ok, detail: c.detail}))}));
    }
    this.lines = report.steps.flatMap((step) => (step.output_tail || "").split("\n")
      .filter((line) => line !== "").map((line) => ({step: step.id, line, stream: "stdout"})));
    if (run.status !== "running" && run.ended_at) {
      this.finished = {status: run.status, duration_s: run.duration_s, rto_s: run.rto.measured_s,
                       error: run.error};
    }
  }

  apply(e) {
    const ts = Date.parse(e.ts) / 1000;
    const step = e.step !== undefined ? this.steps.get(e.step) : null;
    switch (e.event) {
      case "run_started":
        this.title = e.title; this.runbook = e.runbook; this.mode = e.mode;
        this.dryRun = e.dry_run; this.rtoTarget = e.rto_target_s; this.forecast = e.forecast;
        this.started = ts; this.finished = null; this.status = "running";
        this.lines = []; this.milestones = [];
        this.steps = new Map(e.steps.map((s) => [s.id, newStep(s.id, s.title, s.action)]));
        break;
      case "step_planned":
        if (step) { step.status = "planned"; step.command = e.command; }
        break;
      case "step_started":
        if (step) {
          step.status = "running"; step.started = step.started || ts; step.command = e.command;
          step.note = e.max_attempts > 1 ? `attempt ${e.attempt} of ${e.max_attempts}` : null;
        }
        break;
      case "output":
        this.lines.push({step: e.step, line: e.line, stream: e.stream});
        if (this.lines.length > OUTPUT_LINES * 2) this.lines = this.lines.slice(-OUTPUT_LINES);
        break;
      case "progress":
        if (step) step.progress = e;
        break;
      case "check":
        if (step) step.checks.push({name: e.name, ok: e.ok, detail: e.detail});
        break;
      case "attempt_failed":
        if (step) step.note = `attempt ${e.attempt} failed: ${e.error}; again in ${duration(e.retry_in_s)}`;
        break;
      case "operator_wait":
        if (step) { step.status = "waiting"; step.note = `waits for the operator: ${e.prompt}`; }
        break;
      case "operator_answer":
        if (step) { step.status = "running"; step.note = `operator: ${e.answer}${e.note ? " (" + e.note + ")" : ""}`; }
        break;
      case "params_edited": {
        let rerun = false;
        for (const s of this.steps.values()) {
          if (s.id === e.rerun_from) rerun = true;
          if (rerun) { s.status = "pending"; s.duration = null; s.error = null; s.checks = []; s.started = null; }
          if (s.id === e.step) break;
        }
        break;
      }
      case "step_finished":
        if (step) {
          step.status = e.status; step.duration = e.duration_s; step.error = e.error;
          step.reason = e.reason; step.progress = null;
          if (e.status === "succeeded") step.note = null;
        }
        break;
      case "milestone":
        this.milestones.push(e);
        break;
      case "run_finished":
        this.finished = e; this.status = e.status;
        break;
    }
  }

  elapsed(now) {
    if (this.started === null) return null;
    if (this.finished && this.finished.duration_s !== undefined) return this.finished.duration_s;
    return now - this.started;
  }

  forecastOf(id) {
    if (!this.forecast) return null;
    const found = this.forecast.steps.find((s) => s.id === id);
    return found ? found.forecast_s : null;
  }

  // where the run should end, from its start: what has passed and what the rest should take
  projected(now) {
    if (!this.forecast || this.finished || !this.forecast.steps.some((s) => s.forecast_s !== null)) return null;
    let left = 0;
    for (const f of this.forecast.steps) {
      const step = this.steps.get(f.id);
      if (f.forecast_s === null || !step || ["succeeded", "failed", "skipped"].includes(step.status)) continue;
      const running = step.status === "running" || step.status === "waiting";
      left += running && step.started ? Math.max(0, f.forecast_s - (now - step.started)) : f.forecast_s;
    }
    return this.elapsed(now) + left;
  }
}

function stepItem(step, run, now) {
  const forecast = run.forecastOf(step.id);
  let took = "";
  if (step.duration !== null && step.duration !== undefined && step.status !== "running") took = duration(step.duration);
  else if ((step.status === "running" || step.status === "waiting") && step.started) took = duration(now - step.started);
  const timing = el("span", {class: "timing"}, took,
    forecast !== null ? el("span", {class: "quiet", text: ` / ${duration(forecast)}`}) : null);
  let progress = null;
  if (step.progress) {
    const p = step.progress;
    const share = p.total ? ` ${Math.floor(100 * p.done / p.total)}%` : "";
    progress = el("div", {class: "progress", text: `${p.detail || ""}${share}${p.eta_s ? " · " + duration(p.eta_s) + " left" : ""}`.trim()});
  }
  return el("li", {class: "step", "data-step": step.id, "data-status": step.status},
    el("div", {class: "line"},
      el("span", {class: "glyph", text: GLYPH[step.status] || "?"}),
      el("span", {class: "title", text: step.title}),
      el("span", {class: "status", text: step.status}),
      timing),
    step.note ? el("div", {class: "note", text: step.note}) : null,
    progress,
    step.error ? el("div", {class: "error", text: step.error}) : null,
    step.reason && step.status === "skipped" ? el("div", {class: "quiet", text: step.reason}) : null,
    step.checks.length ? el("ul", {class: "checks"}, ...step.checks.map((c) =>
      el("li", {"data-ok": c.ok ? "true" : "false"}, el("span", {class: "glyph", text: c.ok ? "✓" : "✗"}),
         ` ${c.name}`, c.detail ? el("span", {class: "quiet", text: ` — ${c.detail}`}) : null))) : null);
}

function drawRun(run) {
  const now = Date.now() / 1000;
  const elapsed = run.elapsed(now);
  const status = run.finished ? run.finished.status : (run.ended || run.status || "running");
  document.getElementById("heading").textContent = run.title || run.id;
  const facts = [run.runbook, run.mode, run.operator, run.dryRun ? "dry run" : null, run.id.slice(0, 8)]
    .filter(Boolean).join(" · ");
  let rto = `elapsed ${clock(elapsed)}`;
  if (run.rtoTarget) rto = `RTO ${clock(elapsed)} of ${duration(run.rtoTarget)}`;
  if (run.finished && run.finished.rto_s !== null && run.finished.rto_s !== undefined && run.rtoTarget) {
    rto = `RTO ${clock(run.finished.rto_s)} of ${duration(run.rtoTarget)} · ${run.finished.rto_s <= run.rtoTarget ? "met" : "missed"}`;
  }
  const projected = run.projected(now);
  const over = projected !== null && run.rtoTarget && projected > run.rtoTarget;
  const summary = el("section", {class: "summary", "data-status": status},
    el("div", {class: "status-line"},
      el("span", {class: "badge", "data-status": status, id: "run-status", text: status}),
      el("span", {class: "clock", id: "clock", text: rto})),
    el("div", {class: "quiet", text: facts}),
    run.unheard && !run.finished ? el("div", {class: "error", id: "unheard", text: run.unheard}) : null,
    forecastLine(run.forecast, run.rtoTarget) ? el("div", {id: "forecast", text: forecastLine(run.forecast, run.rtoTarget)}) : null,
    projected !== null ? el("div", {id: "projected", class: over ? "warn" : null,
      text: `projected finish ${clock(projected)}${run.rtoTarget ? (over ? " · over the RTO" : " · within the RTO") : ""}`}) : null,
    run.finished && run.finished.error ? el("div", {class: "error", text: run.finished.error}) : null,
    run.milestones.length ? el("div", {class: "quiet", text: run.milestones.map((m) => `${m.name} at ${clock(m.elapsed_s)}`).join(" · ")}) : null);
  const steps = el("ol", {class: "steps", id: "steps"}, ...[...run.steps.values()].map((s) => stepItem(s, run, now)));
  const shown = run.lines.slice(-OUTPUT_LINES);
  const output = el("pre", {id: "output"}, ...shown.map((l) =>
    el("div", {class: l.stream === "stderr" ? "stderr" : null},
       el("span", {class: "quiet", text: `${l.step} │ `}), l.line)));
  const main = document.getElementById("main");
  const old = document.getElementById("output");
  const stick = !old || old.scrollTop + old.clientHeight >= old.scrollHeight - 4;
  main.replaceChildren(summary, el("h2", {text: "Steps"}), steps,
    el("h2", {text: `Output${run.lines.length > OUTPUT_LINES ? ` (last ${OUTPUT_LINES} lines)` : ""}`}), output);
  if (stick) output.scrollTop = output.scrollHeight;
  else output.scrollTop = old.scrollTop;
}

async function showRun(id) {
  const run = new Run(id);
  let scheduled = false;
  const redraw = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; drawRun(run); });
  };
  try {
    run.fromReport(await getJSON(`/api/runs/${encodeURIComponent(id)}`));
  } catch (error) {
    setLink("lost", String(error.message));
    document.getElementById("main").replaceChildren(el("p", {class: "error", text: String(error.message)}));
    return;
  }
  redraw();
  const source = new EventSource(`/api/runs/${encodeURIComponent(id)}/events`);
  // (re)connected: the stream says again whether the run is silent, first thing
  source.onopen = () => { setLink("live", "live"); run.unheard = null; redraw(); };
  source.onmessage = (message) => { run.apply(JSON.parse(message.data)); redraw(); };
  // the run's drdeck fell silent (killed, say), or is heard from again ("")
  source.addEventListener("unheard", (message) => {
    run.unheard = JSON.parse(message.data).unheard || null;
    redraw();
  });
  source.addEventListener("end", (message) => {
    source.close();
    const end = JSON.parse(message.data);
    run.ended = end.status;
    if (end.error) setLink("lost", end.error);
    else setLink("ended", `ended · ${end.status}`);
    redraw();
  });
  source.onerror = () => { if (source.readyState !== EventSource.CLOSED) setLink("lost", "reconnecting…"); };
  setInterval(() => { if (!run.finished && !run.ended) redraw(); }, 1000);
}

const match = location.pathname.match(/^\/runs\/([^/]+)$/);
if (match) showRun(decodeURIComponent(match[1]));
else showList();
