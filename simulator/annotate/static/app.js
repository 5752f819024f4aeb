// probseg-annotate page: draws the case, sends every action to the server, one at a time.
// An action counts as saved only once the server answered 200 (it is then on disk).
"use strict";

const token = new URLSearchParams(location.search).get("t") || "";
const MAIN = 512;   // main canvas size in CSS pixels
const THUMB = 150;  // candidate size
let state = null;
let brush = false;
let brushRadius = null;  // image pixels; null until the first case says its default
let queue = Promise.resolve();
let pending = 0;
let requestedAt = null;  // performance.now() when the request that may bring new candidates left
let paintedKey = null;   // "task/iteration" whose candidates were reported painted
let stroke = null;
let imageOf = {task: null, image: null};  // the current case's image (base64), sent once per case

const $ = (id) => document.getElementById(id);

function setBusy(n) {
  pending = n;
  document.body.dataset.busy = String(n);
}

function showStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function decode(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// One image (grey levels) with a segmentation over it: foreground red, background blue, undecided clear.
function paint(canvas, size, c, labelsB64) {
  const img = decode(c.image), packed = decode(labelsB64);
  const lab = new Uint8Array(c.w * c.h);  // four pixels to a byte, two bits each (service.encode_labels)
  for (let i = 0; i < lab.length; i++) lab[i] = (packed[i >> 2] >> ((i & 3) * 2)) & 3;
  const off = document.createElement("canvas");
  off.width = c.w; off.height = c.h;
  const ctx = off.getContext("2d");
  const data = ctx.createImageData(c.w, c.h);
  for (let i = 0; i < c.w * c.h; i++) {
    let r = img[i], g = img[i], b = img[i];
    if (lab[i] === 2) { r = 0.55 * r + 0.45 * 235; g = 0.55 * g + 0.45 * 50; b = 0.55 * b + 0.45 * 50; }
    else if (lab[i] === 1) { r = 0.7 * r + 0.3 * 50; g = 0.7 * g + 0.3 * 100; b = 0.7 * b + 0.3 * 210; }
    data.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(data, 0, 0);
  const scale = size / Math.max(c.w, c.h);
  canvas.width = Math.round(c.w * scale);
  canvas.height = Math.round(c.h * scale);
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.drawImage(off, 0, 0, canvas.width, canvas.height);
  return scale;
}

function render() {
  for (const id of ["consent", "work", "finish", "error"]) $(id).hidden = true;
  document.body.dataset.seq = String(state.seq);
  document.body.dataset.task = String(state.task);
  if (!state.consented) { $("consent").hidden = false; return; }
  if (state.finished) { $("finish").hidden = false; return; }
  $("work").hidden = false;
  const c = state.case;
  if (c.image) imageOf = {task: state.task, image: c.image};
  else c.image = imageOf.image;  // an answer within a case leaves the image out: it has not changed
  if (brushRadius === null) brushRadius = c.brush_radius;
  const practice = state.kind === "practice";
  const studyIndex = state.task - state.n_practice + 1;
  $("label").textContent = practice ? `Practice ${state.task + 1} of ${state.n_practice}`
                                    : `Case ${studyIndex} of ${state.n_tasks - state.n_practice}`;
  $("progress").max = state.n_tasks;
  $("progress").value = state.task;
  $("count").textContent = `proposal ${c.iteration} of at most ${c.max_iters}`;
  $("mode").textContent = brush ? `brush (size ${brushRadius})` : "click";
  const main = $("main");
  main.dataset.scale = String(paint(main, MAIN, c, c.current));
  const cands = $("cands");
  cands.textContent = "";
  c.candidates.forEach((labels, i) => {
    const box = document.createElement("div");
    box.className = "cand" + (c.chosen === i + 1 ? " chosen" : "");
    const canvas = document.createElement("canvas");
    paint(canvas, c.k > 4 ? THUMB * 0.75 : THUMB, c, labels);
    box.appendChild(canvas);
    box.appendChild(document.createTextNode(String(i + 1)));
    box.addEventListener("click", () => act({type: "choose", position: i + 1, pointer: "mouse"}));
    cands.appendChild(box);
  });
  $("none").className = c.chosen === 0 ? "chosen" : "";
  const key = `${state.task}/${c.iteration}`;
  if (key !== paintedKey && paintedKey !== null) {  // a new proposal: say so when the study proper begins
    const fromPractice = Number(paintedKey.split("/")[0]) < state.n_practice;
    $("notice").textContent = fromPractice && !practice ? "Practice done: the study cases begin now." : "";
  }
  if (key !== paintedKey) {
    paintedKey = key;
    // Report when the new candidates are on screen: after the next frame is painted. The page counts
    // as busy until the report is queued, so nothing waiting for it to settle runs ahead of it.
    setBusy(pending + 1);
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const now = performance.now();
      const latency = requestedAt === null ? 0 : now - requestedAt;
      act({type: "painted", iteration: c.iteration, latency_ms: latency}, now);
      setBusy(pending - 1);
    }));
  }
}

async function load() {
  requestedAt = performance.now();
  const r = await fetch(`api/${encodeURIComponent(token)}/state`);
  if (!r.ok) {
    $("error").hidden = false;
    $("error-text").textContent = r.status === 404 ? "The link's token is unknown; check the link you were sent."
                                                  : `The server answered ${r.status}.`;
    return;
  }
  state = await r.json();
  render();
}

// Send one action; actions go out one after another, each with the sequence number the server expects.
function act(action, t) {
  const when = t === undefined ? performance.now() : t;
  setBusy(pending + 1);
  queue = queue.then(async () => {
    if (!state || (action.type !== "consent" && (!state.consented || state.finished))) return;
    const body = {seq: state.seq, task: action.type === "consent" ? -1 : state.task, t: when, ...action};
    if (["next", "accept", "consent"].includes(action.type)) requestedAt = performance.now();
    showStatus("saving\u2026", false);
    try {
      const r = await fetch(`api/${encodeURIComponent(token)}/event`, {
        method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      });
      const answer = await r.json();
      if (r.ok) { state = answer; showStatus("saved", false); render(); }
      else if (r.status === 409) { state = answer.state; showStatus("the page was out of date; reloaded", true); render(); }
      else showStatus(typeof answer.detail === "string" ? answer.detail : `error ${r.status}`, true);
    } catch (err) {
      showStatus("not saved: the server cannot be reached; try again", true);
    }
  }).finally(() => setBusy(pending - 1));
}

function pixel(ev) {
  const main = $("main"), scale = Number(main.dataset.scale);
  const rect = main.getBoundingClientRect();
  const col = Math.floor((ev.clientX - rect.left) / scale), row = Math.floor((ev.clientY - rect.top) / scale);
  const c = state.case;
  return [Math.min(Math.max(row, 0), c.h - 1), Math.min(Math.max(col, 0), c.w - 1)];
}

function canCorrect() {
  if (state && state.case && state.case.chosen === null) {
    showStatus(`choose a candidate first (1..${state.case.k}, or 0 for none)`, true);
    return false;
  }
  return true;
}

function setup() {
  const main = $("main");
  main.addEventListener("contextmenu", (ev) => ev.preventDefault());
  main.addEventListener("pointerdown", (ev) => {
    if (!state || !state.case || !canCorrect()) return;
    const positive = ev.button === 0 && !ev.shiftKey;
    if (ev.button !== 0 && ev.button !== 2) return;
    const [row, col] = pixel(ev);
    if (brush) {
      stroke = {positive, points: [[row, col]], pointer: ev.pointerType || "mouse"};
      main.setPointerCapture(ev.pointerId);
    } else {
      act({type: "click", row, col, positive, pointer: ev.pointerType || "mouse"});
    }
  });
  main.addEventListener("pointermove", (ev) => {
    if (!stroke) return;
    const p = pixel(ev), last = stroke.points[stroke.points.length - 1];
    if (p[0] !== last[0] || p[1] !== last[1]) {
      stroke.points.push(p);
      const ctx = main.getContext("2d"), scale = Number(main.dataset.scale);
      ctx.fillStyle = stroke.positive ? "rgba(235,50,50,0.8)" : "rgba(50,100,210,0.8)";
      ctx.beginPath();
      ctx.arc((p[1] + 0.5) * scale, (p[0] + 0.5) * scale, Math.max(1, brushRadius) * scale, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
  const endStroke = () => {
    if (!stroke) return;
    const s = stroke;
    stroke = null;
    act({type: "stroke", points: s.points.slice(0, 2000), positive: s.positive, radius: brushRadius, pointer: s.pointer});
  };
  main.addEventListener("pointerup", endStroke);
  main.addEventListener("pointercancel", endStroke);
  $("none").addEventListener("click", () => act({type: "choose", position: 0, pointer: "mouse"}));
  $("agree").addEventListener("click", () => act({type: "consent"}));
  document.addEventListener("keydown", (ev) => {
    if (!state || !state.case || state.finished) return;
    const k = state.case.k;
    if ((ev.ctrlKey || ev.metaKey) && (ev.key === "z" || ev.key === "Z")) {
      ev.preventDefault(); act({type: "undo"}); return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (/^[0-9]$/.test(ev.key) && Number(ev.key) <= k) { act({type: "choose", position: Number(ev.key)}); return; }
    if (ev.key === "b" || ev.key === "B") { brush = !brush; render(); return; }
    if (ev.key === "[") { brushRadius = Math.max(0, brushRadius - 1); render(); return; }
    if (ev.key === "]") { brushRadius = Math.min(Math.max(state.case.h, state.case.w), brushRadius + 1); render(); return; }
    if (ev.key === " ") { ev.preventDefault(); if (canCorrect()) act({type: "next"}); return; }
    if (ev.key === "Enter") { ev.preventDefault(); act({type: "accept"}); }
  });
}

setBusy(0);
setup();
load();
