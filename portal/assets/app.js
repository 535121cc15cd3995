// The installer's page: installations, their batteries, and remote firmware updates.
// Plain JavaScript, no build step. Everything a GX sends is shown through textContent,
// never as HTML. The page is drawn from the portal's state on every change and patched
// into place (morph), so what the installer is doing (a menu, a tick, a text being typed,
// a section opened) is never thrown away by a redraw.
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
  unknown: "Unknown state",
};
const WARNINGS = [
  ["site_reachable", "The site is physically accessible in case on-site recovery is necessary."],
  ["backup_capacity", "The system has adequate backup capacity: the batteries may temporarily disconnect, stop charging or reduce output during the update."],
  ["maintenance_window", "This is a planned maintenance window, not a time of critical system operation or a backup power event."],
];
// The manual's warning (section 12.1), on the confirm step and while an update runs.
const MANUAL_WARNING = "Do not disconnect battery power or VE.Can communication during a firmware update. Interrupting the update process may result in battery malfunction.";
const ORDER_WORDS = { newer: "newer", same: "the same version", older: "older", unknown: "version order unknown" };

const ui = {
  state: null,
  events: null,
  acks: new Map(), // battery key -> Set of confirmed warnings
  reinstall: new Map(), // battery key -> bool: the same or an older version, on purpose
  skipped: new Map(), // battery key -> Set of node or module numbers the installer unticked
  targetsOpen: new Map(), // battery key -> whether "Update only some ..." is open
  detailsOpen: new Map(), // id of a "Details" or "Release notes" section -> opened or closed by the installer
  messages: new Map(), // battery key -> {text} or {error: ErrorJson}
  sending: new Map(), // battery key -> {name, percent}: the browser is sending a file
  pct: new Map(), // "job/state" -> highest percent shown
  dropFor: null, // battery key a file is dragged over
  menuFor: null, // battery key whose menu is open
  uploadFor: null, // battery key the file chooser was opened for
  page: null, // {kind: "events" | "diagnostics", key, opener}
};

const $ = (id) => document.getElementById(id);

// Event handlers are element properties, so a redraw can hand the current ones over.
const HANDLERS = ["onclick", "onchange", "oninput", "onkeydown", "ontoggle", "ondragenter", "ondragover", "ondragleave", "ondrop"];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el[k] = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Makes `from` (on the page) look like `to` (just drawn), keeping `from`'s elements.
function morph(from, to) {
  if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName
    || (from.nodeType === 1 && from.id !== to.id)) {
    from.replaceWith(to);
    return;
  }
  if (from.nodeType !== 1) {
    if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
    return;
  }
  // The same kept section (same id, same content key) keeps what the installer did.
  const kept = from.tagName === "DETAILS" && !!from.dataset.kept
    && from.dataset.kept === to.getAttribute("data-kept");
  for (const a of [...from.attributes]) {
    if (a.name !== "style" && !(kept && a.name === "open") && !to.hasAttribute(a.name)) from.removeAttribute(a.name);
  }
  for (const a of [...to.attributes]) {
    if (a.name !== "style" && !(kept && a.name === "open") && from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
  }
  if (from.style.cssText !== to.style.cssText) from.style.cssText = to.style.cssText; // CSSOM: allowed by the CSP
  for (const p of HANDLERS) if (from[p] !== to[p]) from[p] = to[p];
  if (from.tagName === "INPUT") {
    if (from.type === "checkbox" || from.type === "radio") {
      if (from.checked !== to.checked) from.checked = to.checked;
    } else if (document.activeElement !== from && from.value !== to.value) {
      from.value = to.value;
    }
  }
  // A section the installer opens or closes (data-kept) is theirs: a redraw never
  // changes it, even one that comes before its toggle event.
  if (from.tagName === "DETAILS" && !kept && from.open !== to.open) from.open = to.open;
  morphChildren(from, to);
}

function morphChildren(from, to) {
  const wanted = [...to.childNodes];
  let cur = from.firstChild;
  for (const next of wanted) {
    if (!cur) {
      from.append(next);
      continue;
    }
    if (next.nodeType === 1 && next.id && cur.id !== next.id) {
      const found = [...from.children].find((c) => c.id === next.id);
      if (found) {
        from.insertBefore(found, cur);
        cur = found;
      }
    }
    const after = cur.nextSibling;
    morph(cur, next);
    cur = after;
  }
  while (cur) {
    const after = cur.nextSibling;
    cur.remove();
    cur = after;
  }
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
  if (!res.ok) throw apiError(res.status, data);
  return data;
}

function apiError(status, data) {
  const err = new Error((data && data.error) || `HTTP ${status}`);
  err.status = status;
  err.code = data && data.code;
  err.info = data && data.info;
  return err;
}

// Sends a file with the browser's own progress (fetch has none for uploads).
function sendFile(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("X-Requested-With", "bmsfw");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(Math.floor((e.loaded * 100) / e.total)); };
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (_) { data = { error: xhr.responseText }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(apiError(xhr.status, data));
    };
    xhr.onerror = () => reject(new Error("The connection to the portal was lost while sending the file."));
    xhr.send(file);
  });
}

const key = (pid, instance) => `${pid}/${instance}`;
const batteryPath = (pid, instance) =>
  `/api/installations/${encodeURIComponent(pid)}/batteries/${instance}`;
const diagnosticsPath = (pid, job) =>
  `/api/installations/${encodeURIComponent(pid)}/jobs/${job}/diagnostics`;

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

function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function rawBytes(hex) {
  return (String(hex || "").toUpperCase().match(/../g) || []).join(" ");
}

// One version style everywhere: the decoded version, the raw bytes in small print.
function version(v) {
  if (!v) return h("span", { class: "ver", text: "?" });
  return h("span", { class: "ver" }, v.display,
    v.raw ? h("small", { class: "raw", text: ` bytes ${rawBytes(v.raw)}` }) : null);
}

function versionText(v) {
  return v ? v.display : "?";
}

function ago(ms) {
  if (!ms) return "no contact yet";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `last contact ${s} s ago`;
  if (s < 3600) return `last contact ${Math.round(s / 60)} min ago`;
  return `last contact ${fmtTime(ms)}`;
}

function batteryTitle(b) {
  return [b.manufacturer, b.product_name].filter(Boolean).join(" ") || `Battery ${b.instance}`;
}

// ---- login -----------------------------------------------------------------------------

function showLogin(message) {
  stopEvents();
  ui.state = null;
  closePage();
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
    ui.limits = await api("GET", "/api/limits");
  } catch (_) { ui.limits = null; /* the GX checks the size */ }
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
  if (state) ui.state = state;
  state = ui.state;
  if (!state) return;
  $("whoami").hidden = false;
  $("user-name").textContent = state.user.name;
  $("user-access").textContent = state.user.access_label;
  const banner = $("banner");
  banner.hidden = state.connected;
  banner.textContent = state.connected ? "" : "The portal has lost its connection to the MQTT broker; values may be old.";
  const next = h("div", { id: "installations" },
    state.installations.length ? state.installations.map(renderInstallation)
      : h("p", { class: "muted", text: "No installations are shared with you." }));
  morph($("installations"), next);
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
  return h("section", { class: "installation", id: `inst-${inst.portal_id}`, "data-portal-id": inst.portal_id, "data-presence": inst.presence },
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
  const title = batteryTitle(b);
  const firmware = b.firmware_version ? version({ display: b.firmware_version, raw: b.firmware_raw }) : "—";
  const dropping = ui.dropFor === k;
  return h("article", {
    class: ["card", "device", b.stale ? "stale" : "", dropping ? "dropping" : ""].filter(Boolean).join(" "),
    id: `battery-${b.instance}`, "data-instance": b.instance, "data-key": k, "data-stale": b.stale ? "true" : null,
    ondragenter: (e) => dragOver(e, k), ondragover: (e) => dragOver(e, k),
    ondragleave: () => { if (ui.dropFor === k) { ui.dropFor = null; render(); } },
    ondrop: (e) => dropFile(e, k),
  },
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
    dropping ? h("p", { class: "drop-note", text: "Drop the firmware file to check it for this battery." }) : null,
    renderUpdatePanel(inst, b, k));
}

function metric(label, value, cls, id) {
  return h("div", { class: cls }, h("dt", { text: label }), h("dd", { id }, value));
}

function renderUpdatePanel(inst, b, k) {
  const u = b.latest_update;
  const running = u && !u.ended;
  const parts = [];
  const msg = ui.messages.get(k);
  const sending = ui.sending.get(k);
  const file = b.pending_file;
  if (u && (running || (!file && !sending))) parts.push(renderProgress(inst, b, u, k));
  if (!running) {
    if (sending) parts.push(renderSending(b, sending));
    else if (file) parts.push(renderFile(inst, b, k, file));
  }
  if (msg) parts.push(renderMessage(b, k, msg));
  if (!parts.length) return null;
  return h("div", { class: "panel", id: `panel-${b.instance}` }, parts);
}

function renderMessage(b, k, msg) {
  if (msg.error) {
    return h("div", { class: "result bad", id: `message-${b.instance}`, role: "alert" },
      renderError(msg.error, `message-details-${b.instance}`),
      h("div", { class: "actions" },
        msg.chooseAgain ? h("button", { type: "button", class: "primary", id: `choose-${b.instance}`, onclick: () => chooseFileFor(k) }, "Choose another file") : null,
        h("button", { type: "button", class: "secondary", onclick: () => { ui.messages.delete(k); render(); } }, "Dismiss")));
  }
  return h("p", { class: "muted", id: `message-${b.instance}`, role: "status", text: msg.text });
}

// A section that stays as the installer left it, opened or closed, across redraws, for
// as long as it shows the same thing (`content`): another error in the same place starts
// as `openAtFirst` again.
function keptOpen(id, openAtFirst, content) {
  const key = `${id}\u0000${content}`;
  const open = ui.detailsOpen.has(key) ? ui.detailsOpen.get(key) : openAtFirst;
  return { id, open, "data-kept": key, ontoggle: (e) => { ui.detailsOpen.set(key, e.target.open); } };
}

// A failure in the installer's words: the catalogue's title and first action, the code
// and the GX's own message under "Details".
function renderError(info, detailsId) {
  const steps = (info.steps || []).slice(1);
  return [
    h("strong", { class: "error-title", text: info.title || "Something went wrong" }),
    info.action ? h("p", { class: "error-action", text: info.action }) : null,
    h("details", { class: "details", ...keptOpen(detailsId, false, `${info.code}|${info.message}`) },
      h("summary", { text: "Details" }),
      h("p", { text: info.code ? `Error ${info.code}${info.name ? ` (${info.name})` : ""}` : "No error code" }),
      info.meaning ? h("p", { text: info.meaning }) : null,
      info.message ? h("p", { class: "gx-message", text: info.message }) : null,
      steps.length ? h("ul", {}, steps.map((s) => h("li", { text: s }))) : null),
  ];
}

function renderSending(b, sending) {
  return h("div", { class: "check busy", id: `check-${b.instance}`, role: "status" },
    h("strong", { text: `Sending ${sending.name} to the portal…` }),
    progressBar(`Sending ${sending.name}`, sending.percent));
}

function progressBar(label, percent) {
  const fill = h("span");
  fill.style.width = `${percent}%`; // CSSOM: allowed by the page's CSP
  return h("div", { class: "bar-line" },
    h("div", { class: "bar", role: "progressbar", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent }, fill),
    h("span", { class: "pct", text: `${percent} %` }));
}

function allConfirmed(k) {
  const acks = ui.acks.get(k) || new Set();
  return WARNINGS.every(([name]) => acks.has(name));
}

function renderWarnings(b, k) {
  const acks = ui.acks.get(k) || new Set();
  return [
    h("p", { class: "warning", role: "note" }, h("strong", { text: "WARNING " }), MANUAL_WARNING),
    h("h4", { text: "Before you update, confirm:" }),
    h("ul", { class: "acks" }, WARNINGS.map(([name, text]) =>
      h("li", {}, h("label", {},
        h("input", {
          type: "checkbox", id: `ack-${name}-${b.instance}`, name,
          checked: acks.has(name),
          onchange: (e) => {
            const set = ui.acks.get(k) || new Set();
            if (e.target.checked) set.add(name); else set.delete(name);
            ui.acks.set(k, set);
            render();
          },
        }),
        h("span", { text })))))];
}

// The nodes or modules of a battery that has several: the pre-flight names them, or the
// battery's latest update listed them.
function units(b) {
  const check = b.pending_file && b.pending_file.check;
  const report = check && check.report;
  if (report && report.units && report.units.length >= 2) return { ids: report.units, ...unitNames(report.unit_name) };
  const u = b.latest_update;
  const ids = ((u && u.modules) || []).map((m) => m.index);
  if (ids.length >= 2) return { ids, ...unitNames(u && u.unit_name) };
  return null;
}

// "Node" and "Nodes", as the battery's plugin names them ("Module" when it does not say).
function unitNames(name) {
  const word = name ? name.charAt(0).toUpperCase() + name.slice(1) : "Module";
  return { singular: word, plural: `${word}s` };
}

function renderTargets(b, k) {
  const list = units(b);
  if (!list) return null;
  const skipped = ui.skipped.get(k) || new Set();
  const chosen = list.ids.filter((n) => !skipped.has(n)).length;
  const open = !!ui.targetsOpen.get(k);
  return h("details", {
    class: "targets", id: `targets-${b.instance}`, open,
    ontoggle: (e) => { ui.targetsOpen.set(k, e.target.open); },
  },
    h("summary", { text: chosen === list.ids.length
      ? `${list.plural}: all ${list.ids.length} (change)`
      : `${list.plural}: ${chosen} of ${list.ids.length} chosen (change)` }),
    h("fieldset", {},
      h("legend", { text: `${list.plural} to update` }),
      list.ids.map((n) => h("label", { class: "option" },
        h("input", {
          type: "checkbox", id: `target-${n}-${b.instance}`, "data-target": n,
          checked: !skipped.has(n),
          onchange: (e) => {
            const set = ui.skipped.get(k) || new Set();
            if (e.target.checked) set.delete(n); else set.add(n);
            ui.skipped.set(k, set);
            render();
          },
        }),
        h("span", { text: `${list.singular} ${n}` })))));
}

// The `targets` of the request: null for all, or the chosen numbers.
function chosenTargets(b, k) {
  const list = units(b);
  if (!list) return null;
  const skipped = ui.skipped.get(k) || new Set();
  const chosen = list.ids.filter((n) => !skipped.has(n));
  if (chosen.length === 0) throw new Error(`Choose at least one ${list.singular.toLowerCase()} to update.`);
  return chosen.length === list.ids.length ? null : chosen;
}

// The file staged for a battery: its pre-flight check, then (once passed) the warnings and
// Update.
function renderFile(inst, b, k, f) {
  const check = f.check || { phase: "unavailable" };
  const fileLine = h("p", { class: "file", id: `file-${b.instance}` },
    h("strong", { text: f.name }), ` · ${fmtBytes(f.size)}`);
  const remove = h("button", { type: "button", class: "secondary", id: `remove-${b.instance}`, onclick: () => removeFile(inst.portal_id, b.instance, k) }, "Remove file");
  const replace = (label, cls) => h("button", { type: "button", class: cls, id: `choose-${b.instance}`, onclick: () => chooseFileFor(k) }, label);
  if (check.phase === "sending" || check.phase === "checking") {
    const what = check.phase === "sending" ? "Sending the file to the GX device…" : "The GX device is checking the file…";
    return h("div", { class: "confirm" },
      h("h4", { text: "Firmware file" }), fileLine,
      h("div", { class: "check busy", id: `check-${b.instance}`, role: "status", "data-phase": check.phase },
        h("strong", { text: what }),
        check.phase === "sending" ? progressBar("Sending the file to the GX device", check.percent || 0) : null),
      h("div", { class: "actions" }, remove));
  }
  if (check.phase === "refused") {
    return h("div", { class: "confirm" },
      h("h4", { text: "Firmware file" }), fileLine,
      h("div", { class: "result bad", id: `check-${b.instance}`, role: "alert", "data-phase": "refused" },
        renderError(check.error || {}, `check-details-${b.instance}`)),
      h("div", { class: "actions" }, replace("Choose another file", "primary"), remove));
  }
  const r = check.report;
  const passed = check.phase === "passed" && r;
  const needsTick = passed && (r.order === "same" || r.order === "older");
  const reinstall = !!ui.reinstall.get(k);
  const summary = passed
    ? h("div", { class: "result ok", id: `check-${b.instance}`, role: "status", "data-phase": "passed", "data-order": r.order },
      h("strong", { class: "check-title", text: `${r.battery}: ${versionText(r.version_current)} → ${versionText(r.version_new)} (${ORDER_WORDS[r.order] || ORDER_WORDS.unknown})` }),
      h("small", { class: "raw", text: `bytes ${rawBytes(r.version_current && r.version_current.raw) || "?"} → ${rawBytes(r.version_new && r.version_new.raw)}` }),
      h("ul", { class: "facts" },
        h("li", { text: r.integrity === "signed" ? "Signature verified" : "Checksums verified (this file format carries no signature)" }),
        h("li", { text: `For ${r.products && r.products.length ? r.products.join(", ") : r.battery}` }),
        r.estimate_seconds ? h("li", { text: `Expected duration: about ${fmtDuration(r.estimate_seconds)}` }) : null))
    : h("div", { class: "result warn", id: `check-${b.instance}`, role: "status", "data-phase": check.phase },
      h("strong", { text: "The GX device could not check this file in advance" }),
      h("p", { text: check.note || "It is checked when you press Update." }));
  const notes = passed && r.release_notes
    ? h("details", { class: "notes", ...keptOpen(`notes-${b.instance}`, true, r.release_notes) },
      h("summary", { text: "Release notes" }), h("pre", { text: r.release_notes }))
    : null;
  const tick = needsTick ? h("label", { class: "option reinstall" },
    h("input", {
      type: "checkbox", id: `reinstall-${b.instance}`, checked: reinstall,
      onchange: (e) => { ui.reinstall.set(k, e.target.checked); render(); },
    }),
    h("span", { text: r.order === "same"
      ? `Install ${versionText(r.version_new)} again although the battery runs it already (newer is not always better: do it only when the manufacturer says so).`
      : `Install the older ${versionText(r.version_new)} over ${versionText(r.version_current)} (a downgrade: do it only when the manufacturer says so).` })) : null;
  const ready = allConfirmed(k) && b.can_update && (!needsTick || reinstall);
  return h("div", { class: "confirm" },
    h("h4", { text: "Firmware file" }), fileLine, summary, notes,
    h("div", { class: "actions" }, replace("Replace file", "secondary"), remove),
    renderWarnings(b, k),
    tick,
    renderTargets(b, k),
    b.update_blocked ? h("p", { class: "error", text: b.update_blocked }) : null,
    h("div", { class: "actions" },
      h("button", {
        type: "button", class: "primary", id: `update-${b.instance}`,
        disabled: !ready,
        onclick: () => startUpdate(inst.portal_id, b.instance, k, "update", needsTick && reinstall),
      }, "Update")));
}

// The percentage shown for a state never goes down.
function steadyPercent(u, state) {
  if (u.percent === null || u.percent === undefined) return null;
  const id = `${u.job || u.commandid}/${state}`;
  const shown = Math.max(ui.pct.get(id) || 0, u.percent);
  ui.pct.set(id, shown);
  return shown;
}

function renderProgress(inst, b, u, k) {
  const failed = u.state === "failed";
  const seen = u.states_seen || [];
  let reached = failed ? [...seen].reverse().find((s) => STEPS.includes(s)) || "uploading" : u.state;
  if (failed && reached === "uploading" && u.upload_phase === "received") reached = "transferring";
  const current = STEPS.indexOf(reached);
  const items = STEPS.map((s, i) => {
    let cls = "";
    let status = "not yet";
    if (u.state === "completed" || (current >= 0 && i < current)) { cls = "done"; status = "passed"; }
    else if (i === current) { cls = failed ? "failed" : "current"; status = failed ? "failed" : "now"; }
    const pct = cls === "current" && (s === "uploading" || s === "transferring") ? steadyPercent(u, s) : null;
    return h("li", { class: cls, "data-step": s },
      h("span", { class: "step-label", text: LABELS[s] }),
      h("span", { class: "visually-hidden", text: `: ${status}` }),
      pct !== null ? progressBar(LABELS[s], pct) : null);
  });
  const result = [];
  if (u.state === "completed") {
    result.push(h("div", { class: "result ok", id: `result-${b.instance}` },
      h("strong", { text: "Update completed" }),
      h("span", {}, version(u.version_before), " → ", version(u.version_after))));
  } else if (failed || u.upload_phase === "failed") {
    const info = u.error_info || { title: "Update failed", code: u.error_code, message: u.error };
    result.push(h("div", { class: "result bad", id: `result-${b.instance}`, role: "alert" },
      renderError(info, `result-details-${b.instance}`)));
  }
  if (u.ended && !u.caught_up) {
    result.push(h("p", { class: "muted", id: `catching-up-${b.instance}`,
      text: "The GX device was offline for part of this update; its saved progress messages are still arriving." }));
  }
  const actions = [];
  let retryWarnings = null;
  const remedy = u.error_info && u.error_info.remedy;
  if (u.ended && (failed || u.upload_phase === "failed") && b.can_update) {
    if (remedy === "choose_file") {
      actions.push(h("button", { type: "button", class: "primary", id: `choose-${b.instance}`, onclick: () => chooseFileFor(k) }, "Choose another file"));
    } else if (remedy === "contact_manufacturer") {
      result.push(h("p", { class: "muted", id: `contact-${b.instance}`, text: "Contact the battery manufacturer with the diagnostics of this update." }));
    } else if (u.commandid) {
      retryWarnings = h("div", { class: "confirm" }, renderWarnings(b, k), renderTargets(b, k));
      actions.push(h("button", {
        type: "button", class: "primary", id: `retry-${b.instance}`,
        disabled: !allConfirmed(k),
        onclick: () => startUpdate(inst.portal_id, b.instance, k, "retry", false),
      }, "Retry"));
    }
  }
  actions.push(h("button", { type: "button", class: "secondary", id: `events-${b.instance}`, onclick: (e) => openEvents(k, e.currentTarget) }, "Event log"));
  if (u.job !== null && u.job !== undefined) {
    actions.push(h("button", { type: "button", class: "secondary", id: `diagnostics-${b.instance}`, onclick: (e) => openDiagnostics(k, e.currentTarget) }, "Diagnostics"));
  }
  const tone = u.status_unknown ? "warn" : u.state === "completed" ? "ok" : failed ? "bad" : "busy";
  const label = u.status_unknown ? u.status_note : u.state ? LABELS[u.state] || LABELS.unknown : "Requested";
  const lastReported = u.status_unknown
    ? h("p", { class: "muted", id: `status-unknown-${b.instance}`,
      text: `Last reported by the GX device: ${u.state ? LABELS[u.state] || LABELS.unknown : "Requested"}. The update goes on without the internet; its status arrives when the GX device is back online.` })
    : null;
  const timing = [];
  if (u.started_at) timing.push(`Started ${fmtTime(u.started_at)}`);
  if (!u.ended && u.started_at) timing.push(`elapsed ${fmtDuration((Date.now() - u.started_at) / 1000)}`);
  if (!u.ended && u.estimate_seconds) timing.push(`expected about ${fmtDuration(u.estimate_seconds)}`);
  return h("div", { class: "progress", id: `progress-${b.instance}` },
    h("div", { class: "progress-head" },
      h("h4", { text: "Firmware update" }),
      h("span", { class: `chip ${tone}`, id: `state-${b.instance}`, "data-state": u.state || "", "data-status-unknown": u.status_unknown ? "true" : null, text: label })),
    h("p", { class: "muted", id: `timing-${b.instance}`, text: [u.file_name, ...timing].filter(Boolean).join(" · ") }),
    !u.ended ? h("p", { class: "warning", role: "note" }, h("strong", { text: "WARNING " }), MANUAL_WARNING) : null,
    lastReported,
    h("ol", { class: "steps", id: `steps-${b.instance}`, "aria-label": "Update steps" }, items),
    renderModules(b, u),
    result,
    retryWarnings,
    h("div", { class: "actions" }, actions));
}

// Banks and packs whose BMS updates its nodes or modules one by one: each one's state
// and version, named as the battery's plugin names them.
function renderModules(b, u) {
  const modules = u.modules || [];
  if (modules.length === 0) return null;
  const { singular, plural } = unitNames(u.unit_name);
  const done = modules.filter((m) => m.state === "done" || m.state === "skipped").length;
  const rows = modules.map((m) => h("tr", { "data-module": m.index, "data-state": m.state || "" },
    h("td", { text: `${singular} ${m.index}` }),
    h("td", {}, h("span", { class: `chip ${m.state === "failed" ? "bad" : m.state === "done" ? "ok" : m.state === "updating" ? "busy" : "idle"}`, text: m.state_label || "Unknown state" })),
    h("td", {}, version(m.version))));
  return h("div", { class: "modules", id: `modules-${b.instance}` },
    h("h5", { text: `${plural}: ${done} of ${modules.length} up to date` }),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: singular }), h("th", { text: "State" }), h("th", { text: "Firmware" }))),
      h("tbody", {}, rows)));
}

async function startUpdate(pid, instance, k, what, reinstall) {
  const acks = [...(ui.acks.get(k) || [])];
  const policy = reinstall ? "allow_reinstall_or_downgrade" : "newer_only";
  ui.messages.delete(k);
  try {
    const found = findBattery(k);
    const targets = found ? chosenTargets(found.b, k) : null;
    await api("POST", `${batteryPath(pid, instance)}/${what}`, { acknowledgements: acks, version_policy: policy, targets });
    ui.acks.delete(k);
    ui.reinstall.delete(k);
    ui.skipped.delete(k);
    ui.targetsOpen.delete(k);
  } catch (e) {
    ui.messages.set(k, e.info ? { error: { ...e.info, message: e.info.message || e.message } } : { error: { title: e.message } });
  }
  render();
}

// ---- choosing a file -------------------------------------------------------------------

// Opens the system file chooser for battery `k`. Called straight from the installer's
// click or key press, so the browser allows it.
function chooseFileFor(k) {
  const input = $("file-input");
  ui.uploadFor = k;
  input.value = "";
  input.click();
}

async function fileChosen() {
  const input = $("file-input");
  const file = input.files && input.files[0];
  const k = ui.uploadFor;
  ui.uploadFor = null;
  if (file && k) await uploadFile(k, file);
  input.value = "";
}

function dragOver(e, k) {
  const found = findBattery(k);
  const files = e.dataTransfer && [...(e.dataTransfer.types || [])].includes("Files");
  if (!files || !found || !found.b.can_update) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
  if (ui.dropFor !== k) { ui.dropFor = k; render(); }
}

async function dropFile(e, k) {
  const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
  if (!file) return;
  e.preventDefault();
  ui.dropFor = null;
  await uploadFile(k, file);
}

async function uploadFile(k, file) {
  const found = findBattery(k);
  if (!found) return;
  const { inst, b } = found;
  ui.messages.delete(k);
  if (!b.can_update) {
    ui.messages.set(k, { error: { title: "This battery cannot be updated now", action: b.update_blocked || "" } });
    return render();
  }
  const limit = ui.limits && ui.limits.max_upload_bytes;
  if (limit && file.size > limit) {
    ui.messages.set(k, { chooseAgain: true, error: {
      title: "Firmware file too large",
      action: `This file is ${fmtBytes(file.size)}; the GX device accepts firmware files of at most ${fmtBytes(limit)}. Check that it is the battery firmware file and not an archive of several files.`,
    } });
    return render();
  }
  if (file.size === 0) {
    ui.messages.set(k, { chooseAgain: true, error: { title: "The file is empty", action: "Choose the firmware file from the battery manufacturer." } });
    return render();
  }
  ui.sending.set(k, { name: file.name, percent: 0 });
  ui.acks.delete(k);
  ui.reinstall.delete(k);
  render();
  try {
    await sendFile(`${batteryPath(inst.portal_id, b.instance)}/firmware?name=${encodeURIComponent(file.name)}`, file, (p) => {
      ui.sending.set(k, { name: file.name, percent: p });
      render();
    });
  } catch (e) {
    ui.messages.set(k, { chooseAgain: true, error: e.info ? { ...e.info, message: e.info.message || e.message } : { title: "The file could not be sent", action: e.message } });
  }
  ui.sending.delete(k);
  render();
}

async function removeFile(pid, instance, k) {
  try {
    await api("DELETE", `${batteryPath(pid, instance)}/firmware`);
  } catch (e) {
    ui.messages.set(k, { error: { title: "The file could not be removed", action: e.message } });
  }
  ui.acks.delete(k);
  ui.reinstall.delete(k);
  render();
}

// ---- menu ------------------------------------------------------------------------------

function menuItems() {
  return [...$("menu").querySelectorAll(".menu-item")].filter((el) => !el.hidden);
}

function toggleMenu(k) {
  if (ui.menuFor === k) return closeMenu(true);
  ui.menuFor = k;
  const found = findBattery(k);
  if (!found) return closeMenu(false);
  const { b } = found;
  const upload = $("menu-upload");
  const note = $("menu-upload-blocked");
  upload.setAttribute("aria-disabled", b.can_update ? "false" : "true");
  upload.classList.toggle("disabled", !b.can_update);
  note.hidden = b.can_update;
  note.textContent = b.update_blocked || "";
  const job = b.latest_update && b.latest_update.job;
  $("menu-diagnostics").hidden = job === null || job === undefined;
  $("menu").hidden = false;
  positionMenu(k);
  render();
  const first = menuItems()[0];
  if (first) first.focus();
}

function positionMenu(k) {
  const found = findBattery(k);
  const button = found && $(`dots-${found.b.instance}`);
  if (!button) return closeMenu(false);
  const r = button.getBoundingClientRect();
  const menu = $("menu");
  const width = Math.min(280, window.innerWidth - 24);
  menu.style.width = `${width}px`;
  menu.style.top = `${r.bottom + window.scrollY + 4}px`;
  menu.style.left = `${Math.max(12, r.right + window.scrollX - width)}px`;
}

function closeMenu(refocus) {
  if (!ui.menuFor) return;
  const found = findBattery(ui.menuFor);
  ui.menuFor = null;
  $("menu").hidden = true;
  render();
  if (refocus && found) {
    const dots = $(`dots-${found.b.instance}`);
    if (dots) dots.focus();
  }
}

function menuKeys(e) {
  const items = menuItems();
  const at = items.indexOf(document.activeElement);
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    e.preventDefault();
    const step = e.key === "ArrowDown" ? 1 : -1;
    items[(at + step + items.length) % items.length].focus();
  } else if (e.key === "Home" || e.key === "End") {
    e.preventDefault();
    items[e.key === "Home" ? 0 : items.length - 1].focus();
  } else if (e.key === "Tab") {
    closeMenu(false);
  }
}

// ---- pages: the event log and the diagnostics --------------------------------------------

function openPage(kind, k, opener, title, subtitle) {
  closeMenu(false);
  ui.page = { kind, key: k, opener: opener || null };
  $("page-title").textContent = title;
  $("page-subtitle").textContent = subtitle;
  $("page-body").replaceChildren(h("p", { class: "muted", text: "Asking the GX device…" }));
  $("page").hidden = false;
  $("main").setAttribute("aria-hidden", "true");
  $("page-close").focus();
}

function closePage() {
  if (!ui.page) return;
  const opener = ui.page.opener;
  ui.page = null;
  $("page").hidden = true;
  $("main").removeAttribute("aria-hidden");
  if (opener && document.body.contains(opener)) opener.focus();
}

function pageStillFor(kind, k) {
  return ui.page && ui.page.kind === kind && ui.page.key === k;
}

async function openEvents(k, opener) {
  const found = findBattery(k);
  if (!found) return;
  const { inst, b } = found;
  openPage("events", k, opener, "Event log", `${batteryTitle(b)} · Serial ${b.serial || "?"}`);
  try {
    const data = await api("GET", `${batteryPath(inst.portal_id, b.instance)}/events`);
    if (!pageStillFor("events", k)) return;
    const lines = readableEvents(data.events || [], unitNames(b.latest_update && b.latest_update.unit_name));
    $("page-body").replaceChildren(
      data.note ? h("p", { class: "banner", id: "event-note", role: "status", text: data.note }) : "",
      lines.length
        ? h("ol", { id: "event-list", class: "events" }, lines.map(renderEventLine))
        : h("p", { class: "muted", id: "event-list", text: "No updates recorded for this battery." }));
  } catch (e) {
    if (pageStillFor("events", k)) $("page-body").replaceChildren(h("p", { class: "error", role: "alert", text: e.message }));
  }
}

// The GX's event log for people: newest first, one line per state with its time and the
// versions; the progress in between is left out.
function readableEvents(events, names) {
  const singular = (names && names.singular) || null;
  const lines = [];
  for (const e of events) {
    const at = e.at;
    const job = e.job;
    switch (e.kind) {
      case "initiated":
        lines.push({ at, job, kind: e.kind, text: `Update requested: ${e.label.replace(/^update initiated \((.*)\)(.*)$/, "$1$2")}`, versions: e.version_before ? `Running ${e.version_before.display}` : "" });
        break;
      case "target_version":
        lines.push({ at, job, kind: e.kind, text: "File checked and stored on the GX device", versions: e.version_after ? `Installs ${e.version_after.display}` : "" });
        break;
      case "state_changed":
        if (e.state === "completed" || e.state === "failed") break; // its own line follows
        lines.push({ at, job, kind: e.kind, text: e.state ? LABELS[e.state] || LABELS.unknown : e.label.replace(/^state: /, ""), versions: "" });
        break;
      case "progress":
        break; // coalesced into the state's line
      case "module": {
        const text = singular ? e.label.replace(/^module /, `${singular} `) : e.label.replace(/^module /, "Module ");
        lines.push({ at, job, kind: e.kind, text, versions: e.versions || "" });
        break;
      }
      case "completed":
        lines.push({ at, job, kind: e.kind, text: "Update completed", versions: e.version_before || e.version_after ? `${versionText(e.version_before)} → ${versionText(e.version_after)}` : "" });
        break;
      case "failed":
        lines.push({ at, job, kind: e.kind, text: `Update failed${e.code ? ` (error ${e.code})` : ""}`, versions: e.label.replace(/^failed: /, "") });
        break;
      case "resumed":
        lines.push({ at, job, kind: e.kind, text: "Resumed after the GX device restarted", versions: e.label });
        break;
      default:
        lines.push({ at, job, kind: e.kind || "other", text: e.label, versions: e.versions || "" });
    }
  }
  return lines.reverse();
}

function renderEventLine(line) {
  return h("li", { "data-kind": line.kind },
    h("time", { datetime: new Date(line.at).toISOString(), text: `${fmtTime(line.at)} · update ${line.job}` }),
    h("span", { class: "event-text", text: line.text }),
    line.versions ? h("span", { class: "versions", text: line.versions }) : null);
}

async function openDiagnostics(k, opener) {
  const found = findBattery(k);
  if (!found) return;
  const { inst, b } = found;
  const job = b.latest_update && b.latest_update.job;
  if (job === null || job === undefined) return;
  openPage("diagnostics", k, opener, "Diagnostics", `${batteryTitle(b)} · update ${job}`);
  try {
    const bundle = await api("GET", diagnosticsPath(inst.portal_id, job));
    if (!pageStillFor("diagnostics", k)) return;
    const sections = diagnosticSections(bundle);
    const text = diagnosticText(sections);
    const copyNote = h("p", { class: "muted", id: "copy-note", role: "status" });
    $("page-body").replaceChildren(
      h("div", { class: "actions" },
        h("a", { class: "secondary", id: "diagnostics-download", href: diagnosticsPath(inst.portal_id, job), download: `bmsfw-diagnostics-${inst.portal_id}-job${job}.json` }, "Download JSON"),
        h("button", { type: "button", class: "secondary", id: "diagnostics-copy", onclick: () => copyText(text, copyNote) }, "Copy as text")),
      copyNote,
      ...sections.map((s) => h("section", { class: "diag" },
        h("h3", { text: s.title }),
        h("dl", {}, s.rows.map(([label, value]) => h("div", {}, h("dt", { text: label }), h("dd", { text: value })))))),
      h("label", { class: "visually-hidden", for: "diagnostics-text", text: "Diagnostics as text" }),
      h("textarea", { id: "diagnostics-text", class: "diag-text", readonly: true, rows: 8 }, text));
  } catch (e) {
    if (pageStillFor("diagnostics", k)) $("page-body").replaceChildren(h("p", { class: "error", role: "alert", text: e.message }));
  }
}

function vtext(v) {
  if (!v) return "unknown";
  const raw = Array.isArray(v.raw) ? v.raw.map((x) => x.toString(16).padStart(2, "0")).join("") : v.raw;
  return `${v.display} (bytes ${rawBytes(raw)})`;
}

// The manual's section 10.2, in order.
function diagnosticSections(d) {
  const b = d.battery || {};
  const s = d.battery_state_at_failure;
  const sections = [
    { title: "Installation", rows: [
      ["VRM installation ID", d.vrm_installation_id || "?"],
      ["GX device firmware", d.gx_firmware_version || "?"],
      ["Update", `${d.job_id} (${d.job_state || "?"})`],
      ["Initiated", fmtTime(d.initiated_at)],
    ] },
    { title: "Battery", rows: [
      ["Manufacturer", b.manufacturer || "?"],
      ["Model", b.model || "?"],
      ["Serial number", b.serial || "?"],
    ] },
    { title: "Firmware", rows: [
      ["Current", vtext(d.current_firmware)],
      ["Target", vtext(d.target_firmware)],
      ["File", d.package ? `${d.package.file_name} (${fmtBytes(d.package.size)})` : "?"],
    ] },
  ];
  if (d.error) {
    sections.push({ title: "Error", rows: [
      ["Code", `${d.error.code} (${d.error.name})`],
      ["Title", d.error.title],
      ["Message", d.error.message],
      ...(d.error.resolution || []).map((r, i) => [`Step ${i + 1}`, r]),
    ] });
  }
  if (s) {
    sections.push({ title: "Battery at the time of failure", rows: [
      ["State of charge", fmtNumber(s.soc_percent, "%", 0)],
      ["Voltage", fmtNumber(s.voltage_v, "V", 1)],
      ["Temperature", fmtNumber(s.temperature_c, "°C", 1)],
      ["Alarms", (s.active_alarms || []).join(", ") || "none"],
    ] });
  }
  return sections;
}

function diagnosticText(sections) {
  return sections.map((s) => [`${s.title}`, ...s.rows.map(([l, v]) => `  ${l}: ${v}`)].join("\n")).join("\n\n");
}

async function copyText(text, note) {
  try {
    await navigator.clipboard.writeText(text);
    note.textContent = "Copied. Paste it into your message to support.";
  } catch (_) {
    const area = $("diagnostics-text");
    area.focus();
    area.select();
    const ok = document.execCommand && document.execCommand("copy");
    note.textContent = ok ? "Copied. Paste it into your message to support." : "Select the text below and copy it.";
  }
}

// ---- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("file-input").addEventListener("change", fileChosen);
  $("menu").addEventListener("keydown", menuKeys);
  $("menu-upload").addEventListener("click", () => {
    const k = ui.menuFor;
    const found = k && findBattery(k);
    if (!found || !found.b.can_update) return;
    // The chooser opens from the installer's own click, before the menu closes.
    chooseFileFor(k);
    closeMenu(false);
  });
  $("menu-events").addEventListener("click", (e) => {
    const k = ui.menuFor;
    const found = k && findBattery(k);
    if (k) openEvents(k, found ? $(`dots-${found.b.instance}`) : e.currentTarget);
  });
  $("menu-diagnostics").addEventListener("click", (e) => {
    const k = ui.menuFor;
    const found = k && findBattery(k);
    if (k) openDiagnostics(k, found ? $(`dots-${found.b.instance}`) : e.currentTarget);
  });
  $("page-close").addEventListener("click", closePage);
  document.addEventListener("click", (e) => {
    if (ui.menuFor && !$("menu").contains(e.target) && e.target !== $("file-input")) closeMenu(false);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if (ui.menuFor) closeMenu(true);
    else closePage();
  });
  window.addEventListener("resize", () => { if (ui.menuFor) positionMenu(ui.menuFor); });
  // Elapsed times move on between the GX's messages.
  setInterval(() => {
    if (ui.state && ui.state.installations.some((i) => i.batteries.some((b) => b.latest_update && !b.latest_update.ended))) render();
  }, 1000);
  start().catch((e) => showLogin(e.message));
});
