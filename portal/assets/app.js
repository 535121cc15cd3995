// The installer's page: installations, their batteries, and remote firmware updates.
// Plain JavaScript, no build step. Everything a GX sends is shown through textContent,
// never as HTML.
"use strict";

const STEPS = ["uploading", "transferring", "installing", "restarting", "verifying", "completed"];
const LABELS = {
  uploading: "Uploading to GX device",
  transferring: "Transferring to battery",
  installing: "Installing",
  restarting: "Restarting",
  verifying: "Verifying",
  completed: "Completed",
  failed: "Failed",
};
const WARNINGS = [
  ["site_reachable", "The site is physically accessible in case on-site recovery is necessary."],
  ["backup_capacity", "The system has adequate backup capacity: the batteries may temporarily disconnect, stop charging or reduce output during the update."],
  ["maintenance_window", "This is a planned maintenance window, not a time of critical system operation or a backup power event."],
];

const ui = {
  state: null,
  events: null,
  acks: new Map(), // battery key -> Set of confirmed warnings
  downgrade: new Map(), // battery key -> bool
  skipped: new Map(), // battery key -> Set of module numbers the installer unticked
  onlyText: new Map(), // battery key -> the typed list of nodes or modules to update
  messages: new Map(), // battery key -> {text, bad}
  menuFor: null, // battery key whose menu is open
  sheetFor: null, // battery key whose event log is open
};

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(method, path, body, contentType) {
  const headers = { "X-Requested-With": "bmsfw" };
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = contentType || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = { error: text }; }
  }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.statusText);
    err.status = res.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

const key = (pid, instance) => `${pid}/${instance}`;
const batteryPath = (pid, instance) =>
  `/api/installations/${encodeURIComponent(pid)}/batteries/${instance}`;

function fmtNumber(v, unit, digits) {
  if (v === null || v === undefined) return "—";
  return `${Number(v).toFixed(digits)} ${unit}`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtTime(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleString();
}

function fmtVersion(v) {
  if (!v) return "?";
  return `${v.display} (${String(v.raw).toUpperCase()})`;
}

function ago(ms) {
  if (!ms) return "no contact yet";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `last contact ${s} s ago`;
  if (s < 3600) return `last contact ${Math.round(s / 60)} min ago`;
  return `last contact ${fmtTime(ms)}`;
}

// ---- login -----------------------------------------------------------------------------

function showLogin(message) {
  stopEvents();
  ui.state = null;
  $("app-view").hidden = true;
  $("whoami").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("username").focus();
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  $("login").disabled = true;
  try {
    await api("POST", "/api/login", {
      username: $("username").value,
      password: $("password").value,
    });
    $("password").value = "";
    await start();
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong user name or password." : e.message;
  } finally {
    $("login").disabled = false;
  }
}

async function logout() {
  try { await api("POST", "/api/logout"); } catch (_) { /* the session is gone either way */ }
  showLogin("You are logged out.");
}

// ---- live state ------------------------------------------------------------------------

function stopEvents() {
  if (ui.events) {
    ui.events.close();
    ui.events = null;
  }
}

async function start() {
  try {
    render(await api("GET", "/api/state"));
  } catch (e) {
    if (e.status === 401) return showLogin();
    throw e;
  }
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  stopEvents();
  ui.events = new EventSource("/api/events");
  let last = "";
  ui.events.addEventListener("state", (e) => {
    if (e.data === last) return; // nothing the page shows has changed
    last = e.data;
    render(JSON.parse(e.data));
  });
  ui.events.onerror = async () => {
    try { await api("GET", "/api/state"); } catch (err) { if (err.status === 401) showLogin("Your session ended."); }
  };
}

// ---- rendering -------------------------------------------------------------------------

function findBattery(k) {
  if (!ui.state) return null;
  for (const inst of ui.state.installations) {
    for (const b of inst.batteries) {
      if (key(inst.portal_id, b.instance) === k) return { inst, b };
    }
  }
  return null;
}

function render(state) {
  ui.state = state;
  $("whoami").hidden = false;
  $("user-name").textContent = state.user.name;
  $("user-access").textContent = state.user.access_label;
  const banner = $("banner");
  banner.hidden = state.connected;
  banner.textContent = state.connected ? "" : "The portal has lost its connection to the MQTT broker; values may be old.";

  const focused = document.activeElement && document.activeElement.id;
  const list = $("installations");
  list.replaceChildren(...state.installations.map(renderInstallation));
  if (state.installations.length === 0) {
    list.append(h("p", { class: "muted", text: "No installations are shared with you." }));
  }
  if (focused && $(focused)) $(focused).focus();
  if (ui.menuFor) positionMenu(ui.menuFor);
}

// The GX device is gone (its last will arrived, or it was silent for too long): say since
// when, and that what the page shows is what it last sent.
function renderOffline(inst) {
  if (inst.presence !== "offline") return null;
  const since = inst.offline_since
    ? `GX device offline since ${fmtTime(inst.offline_since)}`
    : inst.presence_label;
  const why = inst.offline_cause === "will"
    ? "Its connection to the VRM Portal was lost."
    : "Nothing was heard from it for too long.";
  return h("div", { class: "banner offline", id: `offline-${inst.portal_id}`, role: "status" },
    h("strong", { text: since }),
    h("span", { text: ` ${why} The values below are the last ones it sent; updates cannot start until it is back online.` }));
}

function renderInstallation(inst) {
  const mode = inst.vrm_portal === 2 || inst.presence === "offline" ? null
    : h("p", { class: "banner", text: `VRM Portal access on this GX device is ${inst.vrm_portal_label}: remote firmware updates need Full.` });
  return h("section", { class: "installation", "data-portal-id": inst.portal_id, "data-presence": inst.presence },
    h("header", {},
      h("h2", { text: inst.name }),
      h("div", { class: "meta" },
        h("div", { text: ago(inst.last_seen) }),
        inst.gx_firmware ? h("div", { text: `GX firmware ${inst.gx_firmware}` }) : null)),
    renderOffline(inst),
    mode,
    inst.batteries.length ? inst.batteries.map((b) => renderBattery(inst, b))
      : h("p", { class: "muted card", text: "No BMS-Can battery is reported by this GX device." }));
}

function alarmChips(b) {
  const active = Object.entries(b.alarms || {}).filter(([, level]) => level > 0);
  if (!active.length) return [h("span", { class: "chip ok", text: "No alarms" })];
  return active.map(([name, level]) =>
    h("span", { class: `chip ${level > 1 ? "bad" : "warn"}`, text: `${level > 1 ? "Alarm" : "Warning"}: ${name}` }));
}

function renderBattery(inst, b) {
  const k = key(inst.portal_id, b.instance);
  const title = [b.manufacturer, b.product_name].filter(Boolean).join(" ") || `Battery ${b.instance}`;
  const firmware = b.firmware_version
    ? `${b.firmware_version}${b.firmware_raw ? ` (${b.firmware_raw.toUpperCase()})` : ""}` : "—";
  return h("article", { class: b.stale ? "card device stale" : "card device", "data-instance": b.instance, "data-key": k, "data-stale": b.stale ? "true" : null },
    h("div", { class: "device-head" },
      h("div", {},
        h("h3", { text: title }),
        h("p", { class: "muted", text: [b.serial && `Serial ${b.serial}`, b.connection].filter(Boolean).join(" · ") })),
      h("button", {
        type: "button", class: "dots", id: `dots-${b.instance}`, "aria-label": `Menu of ${title}`,
        "aria-haspopup": "menu", "aria-expanded": ui.menuFor === k ? "true" : "false",
        onclick: (e) => { e.stopPropagation(); toggleMenu(k); },
      }, "⋮")),
    h("dl", { class: "metrics" },
      metric("State of charge", fmtNumber(b.soc, "%", 0)),
      metric("Voltage", fmtNumber(b.voltage, "V", 1)),
      metric("Current", fmtNumber(b.current, "A", 1)),
      metric("Temperature", fmtNumber(b.temperature, "°C", 1)),
      metric("Firmware", firmware, "wide", `firmware-${b.instance}`)),
    h("div", { class: "status-line" },
      b.stale ? h("span", { class: "chip warn", id: `stale-${b.instance}`, text: `Last known values (${ago(inst.last_seen)})` }) : null,
      h("span", { class: `chip ${b.stale ? "idle" : b.connected === false ? "bad" : "ok"}`, text: b.connected === false ? "Not communicating" : "Communicating" }),
      ...alarmChips(b)),
    renderUpdatePanel(inst, b, k));
}

function metric(label, value, cls, id) {
  return h("div", { class: cls }, h("dt", { text: label }), h("dd", { id, text: value }));
}

function renderUpdatePanel(inst, b, k) {
  const u = b.latest_update;
  const running = u && !u.ended;
  const parts = [];
  const msg = ui.messages.get(k);
  if (u && (running || !b.pending_file)) parts.push(renderProgress(inst, b, u, k));
  if (b.pending_file && !running) parts.push(renderConfirm(inst, b, k));
  if (msg) parts.push(h("p", { class: msg.bad ? "error" : "muted", role: "status", text: msg.text }));
  if (!parts.length) return null;
  return h("div", { class: "panel", id: `panel-${b.instance}` }, parts);
}

function allConfirmed(k) {
  const acks = ui.acks.get(k) || new Set();
  return WARNINGS.every(([name]) => acks.has(name));
}

function renderWarnings(b, k) {
  const acks = ui.acks.get(k) || new Set();
  const items = WARNINGS.map(([name, text]) =>
    h("li", {}, h("label", {},
      h("input", {
        type: "checkbox", id: `ack-${name}-${b.instance}`, name,
        checked: acks.has(name),
        onchange: (e) => {
          const set = ui.acks.get(k) || new Set();
          if (e.target.checked) set.add(name); else set.delete(name);
          ui.acks.set(k, set);
          render(ui.state);
        },
      }),
      h("span", { text: text }))));
  items.push(h("li", {}, h("label", { class: "option" },
    h("input", {
      type: "checkbox", id: `downgrade-${b.instance}`, checked: !!ui.downgrade.get(k),
      onchange: (e) => { ui.downgrade.set(k, e.target.checked); },
    }),
    h("span", { text: "Allow installing the same or an older version (newer is not always better)." }))));
  return [h("h4", { text: "Before you update, confirm:" }), h("ul", { class: "acks" }, items),
    renderTargets(b, k)];
}

// The nodes (a bank of BMS) or modules (a pack) an update installs; default: all. The
// battery's latest update tells which it has; before one, the numbers can be typed.
function knownModules(b) {
  const u = b.latest_update;
  return ((u && u.modules) || []).map((m) => m.index);
}

function renderTargets(b, k) {
  const known = knownModules(b);
  if (known.length >= 2) {
    const skipped = ui.skipped.get(k) || new Set();
    const boxes = known.map((n) => h("label", { class: "option" },
      h("input", {
        type: "checkbox", id: `target-${n}-${b.instance}`, "data-target": n,
        checked: !skipped.has(n),
        onchange: (e) => {
          const set = ui.skipped.get(k) || new Set();
          if (e.target.checked) set.delete(n); else set.add(n);
          ui.skipped.set(k, set);
        },
      }),
      h("span", { text: `${n}` })));
    return h("fieldset", { class: "targets", id: `targets-${b.instance}` },
      h("legend", { text: "Nodes or modules to update (all by default)" }), boxes);
  }
  return h("details", { class: "targets", id: `targets-${b.instance}`, open: !!ui.onlyText.get(k) },
    h("summary", { text: "Update only some nodes or modules (a bank or a pack)" }),
    h("label", {},
      h("span", { text: "Node ids or module numbers, separated by commas; empty: all" }),
      h("input", {
        type: "text", id: `only-${b.instance}`, inputmode: "numeric", value: ui.onlyText.get(k) || "",
        oninput: (e) => { ui.onlyText.set(k, e.target.value); },
      })));
}

// The `targets` of the request: null for all, or the chosen numbers; throws on bad input.
function chosenTargets(b, k) {
  const known = knownModules(b);
  if (known.length >= 2) {
    const skipped = ui.skipped.get(k) || new Set();
    const chosen = known.filter((n) => !skipped.has(n));
    if (chosen.length === 0) throw new Error("Choose at least one node or module to update.");
    return chosen.length === known.length ? null : chosen;
  }
  const text = (ui.onlyText.get(k) || "").trim();
  if (!text) return null;
  const parts = text.split(",").map((p) => p.trim()).filter(Boolean);
  const numbers = parts.map((p) => (/^[0-9]{1,3}$/.test(p) ? Number(p) : NaN));
  if (numbers.some((n) => !(n >= 1 && n <= 255))) {
    throw new Error(`Nodes or modules are numbers from 1 to 255: "${text}"`);
  }
  return numbers;
}

function renderConfirm(inst, b, k) {
  const f = b.pending_file;
  return h("div", { class: "confirm" },
    h("h4", { text: "Firmware file" }),
    h("p", { class: "file", id: `file-${b.instance}` },
      h("strong", { text: f.name }), ` · ${fmtBytes(f.size)}`, h("br"),
      h("code", { text: `SHA-256 ${f.sha256}` })),
    renderWarnings(b, k),
    b.update_blocked ? h("p", { class: "error", text: b.update_blocked }) : null,
    h("div", { class: "actions" },
      h("button", {
        type: "button", class: "primary", id: `update-${b.instance}`,
        disabled: !(allConfirmed(k) && b.can_update),
        onclick: () => startUpdate(inst.portal_id, b.instance, k, "update"),
      }, "Update")));
}

function renderProgress(inst, b, u, k) {
  const failed = u.state === "failed";
  const seen = u.states_seen || [];
  const reached = failed ? [...seen].reverse().find((s) => s !== "failed") || "uploading" : u.state;
  const current = STEPS.indexOf(reached);
  const items = STEPS.map((s, i) => {
    let cls = "";
    if (u.state === "completed" || i < current) cls = "done";
    else if (i === current) cls = failed ? "failed" : "current";
    const showPct = cls === "current" && (s === "uploading" || s === "transferring") && u.percent !== null;
    let bar = null;
    if (showPct) {
      const fill = h("span");
      fill.style.width = `${u.percent}%`; // CSSOM: allowed by the page's CSP
      bar = h("div", { class: "bar", role: "progressbar", "aria-label": LABELS[s], "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": u.percent }, fill);
    }
    return h("li", { class: cls, "data-step": s },
      h("span", { text: LABELS[s] }),
      showPct ? h("span", { class: "pct", text: `${u.percent} %` }) : null,
      bar);
  });
  const result = [];
  if (u.state === "completed") {
    result.push(h("div", { class: "result ok", id: `result-${b.instance}` },
      h("strong", { text: "Update completed" }),
      `${fmtVersion(u.version_before)} → ${fmtVersion(u.version_after)}`));
  } else if (failed || u.upload_phase === "failed") {
    result.push(h("div", { class: "result bad", id: `result-${b.instance}` },
      h("strong", { text: u.error_code ? `Update failed: error ${u.error_code}` : "Update failed" }),
      u.error || ""));
  }
  if (u.ended && !u.caught_up) {
    result.push(h("p", { class: "muted", id: `catching-up-${b.instance}`,
      text: "The GX device was offline for part of this update; its saved progress messages are still arriving." }));
  }
  const actions = [];
  let retryWarnings = null;
  if (u.ended && (failed || u.upload_phase === "failed") && u.commandid && b.can_update) {
    retryWarnings = h("div", { class: "confirm" }, renderWarnings(b, k));
    actions.push(h("button", {
      type: "button", class: "primary", id: `retry-${b.instance}`,
      disabled: !allConfirmed(k),
      onclick: () => startUpdate(inst.portal_id, b.instance, k, "retry"),
    }, "Retry"));
  }
  actions.push(h("button", { type: "button", class: "secondary", onclick: () => openEvents(k) }, "Event log"));
  if (u.job !== null && u.job !== undefined) {
    actions.push(h("a", {
      class: "secondary", download: true,
      href: `/api/installations/${encodeURIComponent(inst.portal_id)}/jobs/${u.job}/diagnostics`,
    }, "Diagnostics"));
  }
  const started = u.started_at ? `Started ${fmtTime(u.started_at)}` : "";
  const tone = u.status_unknown ? "warn" : u.state === "completed" ? "ok" : failed ? "bad" : "busy";
  const label = u.status_unknown ? u.status_note : u.state ? LABELS[u.state] : "Requested";
  const lastReported = u.status_unknown
    ? h("p", { class: "muted", id: `status-unknown-${b.instance}`,
      text: `Last reported by the GX device: ${u.state ? LABELS[u.state] : "Requested"}. The update goes on without the internet; its status arrives when the GX device is back online.` })
    : null;
  return h("div", { class: "progress" },
    h("div", { class: "progress-head" },
      h("h4", { text: "Firmware update" }),
      h("span", { class: `chip ${tone}`, id: `state-${b.instance}`, "data-state": u.state || "", "data-status-unknown": u.status_unknown ? "true" : null, text: label })),
    h("p", { class: "muted", text: [u.file_name, started].filter(Boolean).join(" · ") }),
    lastReported,
    h("ol", { class: "steps", id: `steps-${b.instance}` }, items),
    renderModules(b, u),
    result,
    retryWarnings,
    h("div", { class: "actions" }, actions));
}

// Packs whose BMS updates its modules one by one: each module's state and version.
function renderModules(b, u) {
  const modules = u.modules || [];
  if (modules.length === 0) return null;
  const done = modules.filter((m) => m.state === "done" || m.state === "skipped").length;
  const rows = modules.map((m) => h("tr", { "data-module": m.index, "data-state": m.state || "" },
    h("td", { text: `Module ${m.index}` }),
    h("td", {}, h("span", { class: `chip ${m.state === "failed" ? "bad" : m.state === "done" ? "ok" : m.state === "updating" ? "busy" : "idle"}`, text: m.state_label || "Unknown" })),
    h("td", { text: fmtVersion(m.version) })));
  return h("div", { class: "modules", id: `modules-${b.instance}` },
    h("h5", { text: `Modules: ${done} of ${modules.length} up to date` }),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "Module" }), h("th", { text: "State" }), h("th", { text: "Firmware" }))),
      h("tbody", {}, rows)));
}

async function startUpdate(pid, instance, k, what) {
  const acks = [...(ui.acks.get(k) || [])];
  const policy = ui.downgrade.get(k) ? "allow_reinstall_or_downgrade" : "newer_only";
  ui.messages.delete(k);
  try {
    const found = findBattery(k);
    const targets = found ? chosenTargets(found.b, k) : null;
    await api("POST", `${batteryPath(pid, instance)}/${what}`, { acknowledgements: acks, version_policy: policy, targets });
    ui.acks.delete(k);
    ui.downgrade.delete(k);
    ui.skipped.delete(k);
    ui.onlyText.delete(k);
  } catch (e) {
    ui.messages.set(k, { text: e.message, bad: true });
    render(ui.state);
  }
}

// ---- menu ------------------------------------------------------------------------------

function toggleMenu(k) {
  if (ui.menuFor === k) return closeMenu();
  ui.menuFor = k;
  const found = findBattery(k);
  if (!found) return closeMenu();
  const { inst, b } = found;
  const upload = $("menu-upload");
  const note = $("menu-upload-blocked");
  upload.classList.toggle("disabled", !b.can_update);
  upload.setAttribute("aria-disabled", b.can_update ? "false" : "true");
  note.hidden = b.can_update;
  note.textContent = b.update_blocked || "";
  const diag = $("menu-diagnostics");
  const job = b.latest_update && b.latest_update.job;
  diag.hidden = job === null || job === undefined;
  if (!diag.hidden) diag.href = `/api/installations/${encodeURIComponent(inst.portal_id)}/jobs/${job}/diagnostics`;
  $("menu").hidden = false;
  positionMenu(k);
  render(ui.state);
}

function positionMenu(k) {
  const found = findBattery(k);
  const button = found && $(`dots-${found.b.instance}`);
  if (!button) return closeMenu();
  const r = button.getBoundingClientRect();
  const menu = $("menu");
  const width = Math.min(260, window.innerWidth - 24);
  menu.style.width = `${width}px`;
  menu.style.top = `${r.bottom + window.scrollY + 4}px`;
  menu.style.left = `${Math.max(12, r.right + window.scrollX - width)}px`;
}

function closeMenu() {
  if (!ui.menuFor) return;
  ui.menuFor = null;
  $("menu").hidden = true;
  if (ui.state) render(ui.state);
}

async function fileChosen() {
  const input = $("file-input");
  const file = input.files && input.files[0];
  const k = ui.menuFor;
  closeMenu();
  input.value = "";
  const found = k && findBattery(k);
  if (!file || !found) return;
  const { inst, b } = found;
  ui.messages.set(k, { text: `Uploading ${file.name} to the portal…`, bad: false });
  render(ui.state);
  try {
    await api("POST", `${batteryPath(inst.portal_id, b.instance)}/firmware?name=${encodeURIComponent(file.name)}`, file);
    ui.messages.delete(k);
    ui.acks.set(k, new Set());
  } catch (e) {
    ui.messages.set(k, { text: `Upload failed: ${e.message}`, bad: true });
  }
  render(ui.state);
}

// ---- event log -------------------------------------------------------------------------

async function openEvents(k) {
  closeMenu();
  const found = findBattery(k);
  if (!found) return;
  const { inst, b } = found;
  ui.sheetFor = k;
  $("sheet").hidden = false;
  $("sheet-subtitle").textContent = `${[b.manufacturer, b.product_name].filter(Boolean).join(" ")} · Serial ${b.serial || "?"}`;
  const list = $("event-list");
  list.replaceChildren(h("li", { class: "muted", text: "Asking the GX device…" }));
  $("sheet-close").focus();
  try {
    const data = await api("GET", `${batteryPath(inst.portal_id, b.instance)}/events`);
    const events = [...data.events].reverse();
    list.replaceChildren(...(events.length ? events.map(renderEvent)
      : [h("li", { class: "muted", text: "No updates recorded for this battery." })]));
  } catch (e) {
    list.replaceChildren(h("li", { class: "error", text: e.message }));
  }
}

function renderEvent(e) {
  return h("li", { "data-kind": e.kind },
    h("time", { datetime: new Date(e.at).toISOString(), text: `${fmtTime(e.at)} · job ${e.job}` }),
    h("span", { text: e.label }),
    e.code ? h("span", { class: "code", text: ` (error ${e.code})` }) : null,
    e.versions ? h("span", { class: "versions", text: e.versions }) : null);
}

function closeSheet() {
  ui.sheetFor = null;
  $("sheet").hidden = true;
}

// ---- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("file-input").addEventListener("change", fileChosen);
  $("menu-events").addEventListener("click", () => { const k = ui.menuFor; if (k) openEvents(k); });
  $("menu-upload").addEventListener("click", (e) => {
    if ($("menu-upload").classList.contains("disabled")) e.preventDefault();
  });
  $("sheet-close").addEventListener("click", closeSheet);
  document.addEventListener("click", (e) => {
    if (ui.menuFor && !$("menu").contains(e.target)) closeMenu();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { closeMenu(); closeSheet(); }
  });
  window.addEventListener("resize", () => { if (ui.menuFor) positionMenu(ui.menuFor); });
  start().catch((e) => showLogin(e.message));
});
