// The page of `ssd serve`: an image or webcam frames to POST /v1/detect, the detections drawn on a canvas.
// Plain JavaScript, no build step. The score slider filters what is drawn without a new request.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const context = canvas.getContext("2d");
const state = { image: null, detections: [], classNames: [], camera: null, starting: false, frames: 0 };

// ------------------------------------------------------------------------------------------------- the API

async function api(path, options = {}, retried = false) {
  const headers = { ...(options.headers || {}) };
  const key = sessionStorage.getItem("ssd-api-key");
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !retried) {
    const entered = window.prompt("This server needs its API key:");
    if (entered) {
      sessionStorage.setItem("ssd-api-key", entered.trim());
      return api(path, options, true);
    }
  }
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text.slice(0, 200) }; // not the server's JSON: a proxy's page, say
  }
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

async function loadModel() {
  try {
    const model = await api("/v1/model");
    state.classNames = model.class_names;
    $("model").textContent = `${model.name} · ${model.class_names.length} classes · ${model.input_size} px · ` +
      `${model.backend} ${model.precision} on ${model.device}`;
  } catch (error) {
    $("model").textContent = `no model: ${error.message}`;
  }
}

function detect(blob) {
  return api("/v1/detect", { method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });
}

// ------------------------------------------------------------------------------------------------- drawing

function colour(label) {
  return `hsl(${(label * 137.5) % 360}, 85%, 45%)`;
}

function draw() {
  const threshold = Number($("score").value);
  $("score-value").textContent = threshold.toFixed(2);
  if (!state.image) return;
  canvas.width = state.image.width;
  canvas.height = state.image.height;
  context.drawImage(state.image, 0, 0);
  const kept = state.detections.filter((d) => d.score >= threshold);
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300));
  context.lineWidth = line;
  context.font = `${6 * line + 4}px system-ui, sans-serif`;
  context.textBaseline = "top";
  for (const d of kept) {
    const [x1, y1, x2, y2] = d.box;
    const text = `${d.name} ${d.score.toFixed(2)}`;
    context.strokeStyle = context.fillStyle = colour(d.label);
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const width = context.measureText(text).width + 2 * line;
    const top = y1 >= 8 * line ? y1 - 7 * line : y1;
    context.fillRect(x1 - line / 2, top, width, 7 * line);
    context.fillStyle = "#fff";
    context.fillText(text, x1 + line, top + line / 2);
  }
  canvas.dataset.drawn = String(kept.length);
  listDetections(kept);
}

function listDetections(kept) {
  $("count").textContent = `(${kept.length})`;
  $("detections").replaceChildren(...kept.map((d) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.style.background = colour(d.label);
    item.append(swatch, `${d.name} ${d.score.toFixed(3)}`);
    return item;
  }));
}

function show(image, result) {
  state.image = image;
  state.detections = result.detections;
  canvas.hidden = false;
  $("drop").hidden = true;
  draw();
}

// ------------------------------------------------------------------------------------------------- images

async function detectFile(file) {
  if (state.camera) stopCamera();
  $("status").textContent = `detecting ${file.name}…`;
  try {
    const [image, result] = await Promise.all([createImageBitmap(file), detect(file)]);
    show(image, result);
    $("status").textContent = `${file.name}: ${result.image.width}×${result.image.height}, ` +
      `${result.detections.length} detections in ${result.time_ms} ms`;
  } catch (error) {
    $("status").textContent = `${file.name}: ${error.message}`;
  }
}

// ------------------------------------------------------------------------------------------------- the camera

async function startCamera() {
  if (state.starting) return; // a second click while the browser asks for the camera
  state.starting = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    state.camera = { stream, started: performance.now(), frames: 0 };
    $("camera").textContent = "Stop the camera";
    $("camera").classList.add("on");
    cameraLoop(state.camera);
  } catch (error) {
    $("status").textContent = `camera: ${error.message}`;
  } finally {
    state.starting = false;
  }
}

function stopCamera() {
  state.camera.stream.getTracks().forEach((track) => track.stop());
  state.camera = null;
  $("camera").textContent = "Start the camera";
  $("camera").classList.remove("on");
}

// One frame in flight at a time: grab it into a canvas of its own, send it, draw it with its detections, repeat.
async function cameraLoop(camera) {
  const video = $("video");
  while (state.camera === camera) {
    const grab = document.createElement("canvas");
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    try {
      const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
      const result = await detect(blob);
      if (state.camera !== camera) break;
      show(grab, result);
      camera.frames += 1;
      state.frames += 1;
      canvas.dataset.frames = String(state.frames);
      const fps = camera.frames / ((performance.now() - camera.started) / 1000);
      $("status").textContent = `camera: ${fps.toFixed(1)} frames/s, ${result.time_ms} ms on the server`;
    } catch (error) {
      $("status").textContent = `camera: ${error.message}`;
      if (error.status === 401 && state.camera === camera) stopCamera(); // no key given: do not ask every second
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

// ------------------------------------------------------------------------------------------------- wiring

$("file").addEventListener("change", (event) => event.target.files[0] && detectFile(event.target.files[0]));
$("score").addEventListener("input", draw);
$("camera").addEventListener("click", () => (state.camera ? stopCamera() : startCamera()));
const stage = $("stage");
stage.addEventListener("dragover", (event) => { event.preventDefault(); stage.classList.add("over"); });
stage.addEventListener("dragleave", () => stage.classList.remove("over"));
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("over");
  if (event.dataTransfer.files[0]) detectFile(event.dataTransfer.files[0]);
});
loadModel();
