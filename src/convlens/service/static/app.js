// convlens web page: plain JavaScript over the /api/v1 REST API (no build step).
"use strict";
const API = "/api/v1";
const $ = (sel) => document.querySelector(sel);
let apiKey = sessionStorage.getItem("convlens-key") || "";
let page = 0;
const PAGE_SIZE = 20;
let cameraShots = [];
let styleJob = null;

function say(text, ok = false) {
  const box = $("#message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

async function api(path, options = {}) {
  if (!apiKey) throw new Error("Enter an API key first.");
  const headers = { "x-api-key": apiKey, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(API + path, { ...options, headers });
  } catch (e) {
    throw new Error("The service cannot be reached.");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();
const tau = (value) => (value == null ? "none (uncalibrated)" : value.toFixed(4));

function guard(fn) {
  return async (...args) => {
    try { await fn(...args); } catch (e) { say(e.message); }
  };
}

// -- key and tabs -----------------------------------------------------------------------------
function showKeyState() {
  $("#key-state").textContent = apiKey ? "key set" : "no key";
  $("#api-key").value = apiKey;
}

$("#key-form").addEventListener("submit", guard(async (ev) => {
  ev.preventDefault();
  apiKey = $("#api-key").value.trim();
  sessionStorage.setItem("convlens-key", apiKey);
  showKeyState();
  await json("/people?size=1");
  say("Key accepted.", true);
  await loadPeople();
}));

function showTab(name) {
  say("");
  for (const b of document.querySelectorAll("nav button")) {
    b.setAttribute("aria-pressed", String(b.dataset.tab === name));
  }
  for (const s of document.querySelectorAll("main section")) s.hidden = s.id !== `tab-${name}`;
  if (name === "threshold") guard(loadThreshold)();
  if (name === "people" && apiKey) guard(loadPeople)();
}
for (const b of document.querySelectorAll("nav button")) {
  b.addEventListener("click", () => showTab(b.dataset.tab));
}

// -- people -----------------------------------------------------------------------------------
async function loadPeople() {
  const data = await json(`/people?page=${page}&size=${PAGE_SIZE}`);
  const body = $("#people-table tbody");
  body.replaceChildren();
  for (const p of data.people) {
    const row = body.insertRow();
    row.insertCell().textContent = p.name;
    row.insertCell().textContent = p.photos;
    const forget = document.createElement("button");
    forget.type = "button";
    forget.className = "danger";
    forget.textContent = "Forget";
    forget.setAttribute("aria-label", `Forget ${p.name}`);
    forget.addEventListener("click", () => askForget(p.name));
    row.insertCell().append(forget);
  }
  const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
  $("#page-info").textContent = `page ${page + 1} of ${pages} (${data.total} people)`;
  $("#page-prev").disabled = page === 0;
  $("#page-next").disabled = page + 1 >= pages;
}
$("#people-refresh").addEventListener("click", guard(loadPeople));
$("#page-prev").addEventListener("click", guard(async () => { page -= 1; await loadPeople(); }));
$("#page-next").addEventListener("click", guard(async () => { page += 1; await loadPeople(); }));

function askForget(name) {
  const dialog = $("#forget-dialog");
  $("#forget-name").textContent = name;
  dialog.onclose = guard(async () => {
    if (dialog.returnValue !== "forget") return;
    const r = await json(`/people/${encodeURIComponent(name)}`, { method: "DELETE" });
    say(`Forgot ${r.name}: ${r.erased} embedding(s) erased.`, true);
    await loadPeople();
  });
  dialog.showModal();
}

$("#enroll-form").addEventListener("submit", guard(async (ev) => {
  ev.preventDefault();
  const name = $("#enroll-name").value.trim();
  const form = new FormData();
  form.append("name", name);
  for (const f of $("#enroll-files").files) form.append("images", f, f.name);
  cameraShots.forEach((blob, i) => form.append("images", blob, `webcam-${i}.jpg`));
  if (!form.getAll("images").length) throw new Error("Choose a photo or take one with the webcam.");
  const r = await json("/people", { method: "POST", body: form });
  say(`Enrolled ${r.name}: ${r.added.length} photo(s) added, ${r.photos} in all.`, true);
  cameraShots = [];
  $("#camera-count").textContent = "";
  $("#enroll-form").reset();
  await loadPeople();
}));

$("#camera-start").addEventListener("click", guard(async () => {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error("No webcam access in this browser.");
  const video = $("#camera");
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
  video.hidden = false;
  $("#camera-snap").hidden = false;
}));
$("#camera-snap").addEventListener("click", () => {
  const video = $("#camera");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    cameraShots.push(blob);
    $("#camera-count").textContent = `${cameraShots.length} webcam photo(s) taken`;
  }, "image/jpeg", 0.92);
});

// -- identify ---------------------------------------------------------------------------------
async function identify(file) {
  const form = new FormData();
  form.append("image", file, file.name || "photo");
  form.append("k", "3");
  $("#identify-list").replaceChildren();
  const result = await json("/identify", { method: "POST", body: form });
  const img = await createImageBitmap(file);
  const canvas = $("#identify-canvas");
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const stroke = Math.max(2, img.width / 300);
  ctx.lineWidth = stroke;
  ctx.font = `${Math.max(14, img.width / 40)}px system-ui, sans-serif`;
  const list = $("#identify-list");
  for (const f of result.faces) {
    const [x0, y0, x1, y1] = f.box;
    const label = f.name ?? "unknown";
    ctx.strokeStyle = f.name ? "#1fa34a" : "#d63384";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const h = parseInt(ctx.font, 10) * 1.3;
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillRect(x0, y1, ctx.measureText(label).width + 8, h);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x0 + 4, y1 + h * 0.78);
    const li = document.createElement("li");
    const best = f.candidates.map((c) => `${c.name} ${c.distance.toFixed(3)}`).join(", ");
    li.textContent = `${label} (distance ${f.distance?.toFixed(3) ?? "–"}; candidates: ${best || "none"})`;
    list.append(li);
  }
  canvas.hidden = false;
  const t = result.threshold;
  say(`${result.faces.length} face(s) found; τ = ${tau(t.value)} (${t.provenance.source}).`, true);
}
$("#identify-file").addEventListener("change", guard(async (ev) => {
  if (ev.target.files[0]) await identify(ev.target.files[0]);
}));
const drop = $("#drop");
drop.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("#identify-file").click(); }
});
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", guard(async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  if (ev.dataTransfer.files[0]) await identify(ev.dataTransfer.files[0]);
}));

// -- liveness ---------------------------------------------------------------------------------
function describeTrack(t) {
  const who = t.name ?? "unknown";
  const reasons = t.liveness.reasons.join(", ") || "no cue fired";
  const dist = t.distance == null ? "" : `, distance ${t.distance.toFixed(3)}`;
  return `${t.liveness.verdict.toUpperCase()} (${reasons}; score ${t.liveness.score}) — ` +
    `${who}${dist}, seen ${t.seconds} s` + (t.open ? " — open" : "");
}

$("#liveness-form").addEventListener("submit", guard(async (ev) => {
  ev.preventDefault();
  const file = $("#liveness-file").files[0];
  const name = $("#liveness-name").value.trim();
  const form = new FormData();
  form.append("video", file, file.name || "clip");
  if (name) form.append("name", name);
  const list = $("#liveness-list");
  list.replaceChildren();
  say("Checking the clip…", true);
  const r = await json(name ? "/verify/live" : "/liveness", { method: "POST", body: form });
  for (const t of name ? [r] : r.tracks) {
    const li = document.createElement("li");
    li.textContent = describeTrack(t);
    li.className = t.liveness.verdict;
    list.append(li);
  }
  const c = r.clip;
  say(name ? `${name}: ${r.open ? "live and matching — open" : "not opened"}.`
           : `${r.tracks.length} face(s) in ${c.width}x${c.height}, ${c.seconds} s.`, true);
}));

// -- threshold --------------------------------------------------------------------------------
async function loadThreshold() {
  const t = await json("/threshold");
  const dl = $("#threshold-info");
  dl.replaceChildren();
  const rows = { "τ": tau(t.value), scorer: t.scorer, ...t.provenance };
  delete rows.threshold;
  for (const [k, v] of Object.entries(rows)) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = typeof v === "number" ? String(+v.toPrecision(4)) : String(v);
    dl.append(dt, dd);
  }
  const cal = $("#calibration");
  const plot = $("#calibration-plot");
  try {
    const c = await json("/calibration");
    const r = c.report;
    cal.textContent = `On the gallery's own ${c.photos} photos of ${c.people} people: EER ` +
      `${(100 * r.eer).toFixed(2)} % at τ = ${r.eer_threshold.toFixed(3)}; ` +
      Object.entries(r.tar_at_far).map(([far, e]) =>
        `TAR ${(100 * e.tar).toFixed(1)} % at FAR ${far}${e.measurable ? "" : " (too few pairs)"}`).join("; ");
    const o = r.open_set;
    $("#open-set").textContent = o
      ? `Open set, one-shot (${o.enrolled} people enrolled from one photo, ${o.mated_probes} of ` +
        `their other photos, ${o.non_mated_probes} photos of strangers): rank-1 ` +
        `${(100 * o.rank1).toFixed(1)} %; ` + Object.entries(o.at_fpir).map(([f, e]) =>
          `DIR ${(100 * e.dir).toFixed(1)} % at FPIR ${f}` +
          (e.measurable ? ` (τ = ${e.threshold.toFixed(3)})` : " (too few strangers to measure)")).join("; ")
      : `No open-set figures: ${r.open_set_note}`;
    const blob = await (await api("/calibration/plot.png")).blob();
    plot.src = URL.createObjectURL(blob);
    plot.hidden = false;
  } catch (e) {
    cal.textContent = `No calibration plot: ${e.message}`;
    $("#open-set").textContent = "";
    plot.hidden = true;
  }
}

// -- style ------------------------------------------------------------------------------------
async function followJob(id) {
  // EventSource cannot send the key header: read the event stream with fetch instead.
  const response = await api(`/style/jobs/${id}/events`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = /^event: (.*)$/m.exec(block)?.[1];
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] || "null");
      if (kind === "progress") {
        $("#style-progress").max = data.steps;
        $("#style-progress").value = data.step;
        $("#style-state").textContent = `step ${data.step} of ${data.steps} (${data.seconds} s)`;
      } else if (kind === "end") {
        return data;
      }
    }
  }
  return json(`/style/jobs/${id}`);
}

$("#style-form").addEventListener("submit", guard(async (ev) => {
  ev.preventDefault();
  const form = new FormData();
  form.append("content", $("#style-content").files[0]);
  form.append("style", $("#style-style").files[0]);
  form.append("size", $("#style-size").value);
  form.append("steps", $("#style-steps").value);
  $("#style-download").hidden = true;
  $("#style-result").hidden = true;
  const job = await json("/style/jobs", { method: "POST", body: form });
  styleJob = job.id;
  $("#style-cancel").disabled = false;
  $("#style-state").textContent = "queued";
  try {
    const end = await followJob(job.id);
    $("#style-state").textContent = end.status + (end.error ? `: ${end.error}` : "");
    if (end.status === "done") {
      const blob = await (await api(`/style/jobs/${job.id}/result`)).blob();
      const url = URL.createObjectURL(blob);
      $("#style-download").href = url;
      $("#style-download").hidden = false;
      $("#style-result").src = url;
      $("#style-result").hidden = false;
    }
  } finally {
    $("#style-cancel").disabled = true;
    styleJob = null;
  }
}));
$("#style-cancel").addEventListener("click", guard(async () => {
  if (styleJob) await json(`/style/jobs/${styleJob}`, { method: "DELETE" });
}));

showKeyState();
if (apiKey) guard(loadPeople)();
