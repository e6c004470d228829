// The web page: settings -> POST /api/images (NDJSON) -> progress, preview, gallery;
// chat -> POST /api/text (NDJSON tokens) -> streamed replies, each of which can become the prompt.
"use strict";

const $ = (id) => document.getElementById(id);
const FIELDS = ["prompt", "negative_prompt", "steps", "guidance_scale", "width", "height", "seed", "sampler", "model"];
let running = null; // the AbortController of the generation in flight: aborting it cancels the job
let chatting = null; // the same for the chat reply in flight
let history = []; // the conversation so far, as {role, content}

function headers() {
  const key = $("api-key").value || localStorage.getItem("diffuse_kit_key") || "";
  if ($("api-key").value) localStorage.setItem("diffuse_kit_key", key);
  return key ? { "Content-Type": "application/json", Authorization: `Bearer ${key}` } : { "Content-Type": "application/json" };
}

async function getJSON(path, request = null) {  // a POST when there is a request body
  const init = request === null
    ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(request) };
  const response = await fetch(path, init);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function settings() {
  const body = {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    steps: Number($("steps").value),
    guidance_scale: Number($("guidance_scale").value),
    width: Number($("width").value),
    height: Number($("height").value),
    model: $("model").value || null,
    sampler: $("sampler").value || null,
    stream: true,
  };
  const seed = Number($("seed").value);
  if (seed >= 0) body.seed = seed;
  return body;
}

function restore(request, seed) {
  for (const field of FIELDS) {
    if (request[field] === undefined || request[field] === null) continue;
    $(field).value = request[field];
    $(field).dispatchEvent(new Event("input"));
  }
  $("seed").value = seed;
}

function setStatus(text) { $("status").textContent = text; }

function showProgress(line) {
  $("progress").max = line.total;
  $("progress").value = line.step;
  setStatus(`step ${line.step}/${line.total} · ${line.elapsed.toFixed(1)}s elapsed · ${line.eta.toFixed(1)}s left`);
  if (line.preview) { $("preview").src = line.preview; $("preview").hidden = false; }
}

function addToGallery(line, request) {
  line.images.forEach((src, i) => {
    const item = document.createElement("figure");
    item.className = "item";
    const image = document.createElement("img");
    image.src = src;
    image.alt = request.prompt;
    const text = document.createElement("pre");
    text.textContent = line.infotext[i];
    const download = document.createElement("a");
    download.href = src;
    download.download = `diffuse_kit-${line.seeds[i]}.png`;
    download.textContent = "download";
    const reuse = document.createElement("button");
    reuse.type = "button";
    reuse.textContent = "reuse settings";
    reuse.addEventListener("click", () => restore(request, line.seeds[i]));
    item.append(image, text, download, " ", reuse);
    $("gallery").prepend(item);
  });
  $("preview").src = line.images[0];
  $("preview").hidden = false;
}

async function postNDJSON(path, body, signal, onLine) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok) throw new Error((await response.json()).error.message);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      onLine(JSON.parse(buffer.slice(0, newline)));
      buffer = buffer.slice(newline + 1);
    }
  }
}

async function generate() {
  const request = settings();
  running = new AbortController();
  $("generate").disabled = true;
  $("cancel").disabled = false;
  $("progress").value = 0;
  setStatus("queued…");
  try {
    await postNDJSON("/api/images", request, running.signal, (line) => {
      if (line.type === "progress") showProgress(line);
      else if (line.type === "result") { addToGallery(line, request); setStatus(`done: seed ${line.seeds[0]}`); }
      else if (line.type === "cancelled") setStatus("cancelled");
      else if (line.type === "error") setStatus(`error: ${line.error.message}`);
    });
  } catch (error) {
    setStatus(error.name === "AbortError" ? "cancelled" : `error: ${error.message}`);
  } finally {
    running = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
}

async function suggest() {
  $("suggest").disabled = true;
  try {
    const answer = await getJSON("/api/suggest", { seed_text: $("prompt").value, model: $("chat-model").value || null });
    $("prompt").value = answer.prompt;
    setStatus("prompt suggested by the text model");
  } catch (error) {
    setStatus(`error: ${error.message}`);
  } finally {
    $("suggest").disabled = false;
  }
}

function addMessage(role, text) {
  const item = document.createElement("div");
  item.className = `message ${role}`;
  const content = document.createElement("span");
  content.textContent = text;
  item.append(content);
  $("chat-log").append(item);
  return item;
}

function offerToImage(item, text) {
  const send = document.createElement("button");
  send.type = "button";
  send.textContent = "send to image";
  send.addEventListener("click", () => { $("prompt").value = text.trim(); $("prompt").focus(); });
  item.append(send);
}

async function sendChat() {
  const text = $("chat-input").value.trim();
  if (!text) return;
  history.push({ role: "user", content: text });
  addMessage("user", text);
  $("chat-input").value = "";
  const system = $("chat-system").value.trim();
  const body = {
    messages: system ? [{ role: "system", content: system }, ...history] : history,
    model: $("chat-model").value || null,
    temperature: Number($("chat-temperature").value),
    max_new_tokens: Number($("chat-max-tokens").value),
    stream: true,
  };
  const reply = addMessage("assistant", "");
  const content = reply.firstChild;
  chatting = new AbortController();
  $("chat-send").disabled = true;
  $("chat-stop").disabled = false;
  try {
    await postNDJSON("/api/text", body, chatting.signal, (line) => {
      if (line.type === "token") content.textContent += line.text;
      else if (line.type === "result") content.textContent = line.text;
      else if (line.type === "error") content.textContent = `error: ${line.error.message}`;
    });
  } catch (error) {
    if (error.name !== "AbortError") content.textContent = `error: ${error.message}`;
  } finally {
    chatting = null;
    $("chat-send").disabled = false;
    $("chat-stop").disabled = true;
  }
  history.push({ role: "assistant", content: content.textContent });
  offerToImage(reply, content.textContent);
}

async function init() {
  for (const id of ["steps", "guidance_scale", "width", "height", "chat-temperature", "chat-max-tokens"]) {
    $(id).addEventListener("input", () => { $(`${id}-out`).textContent = $(id).value; });
  }
  $("generate").addEventListener("click", generate);
  $("cancel").addEventListener("click", () => running && running.abort());
  $("suggest").addEventListener("click", suggest);
  $("chat-send").addEventListener("click", sendChat);
  $("chat-stop").addEventListener("click", () => chatting && chatting.abort());
  $("chat-clear").addEventListener("click", () => { history = []; $("chat-log").replaceChildren(); });
  try {
    const health = await getJSON("/api/health");
    $("health").textContent = `status ${health.status}`;
    const [models, samplers] = await Promise.all([getJSON("/api/models"), getJSON("/api/samplers")]);
    for (const model of models.data) {
      if (model.kind === "image") $("model").add(new Option(model.id, model.id, false, model.id === models.default));
      else $("chat-model").add(new Option(model.id, model.id, false, model.id === models.default_text));
    }
    for (const sampler of samplers.data) $("sampler").add(new Option(sampler.name, sampler.name));
  } catch (error) {
    setStatus(`error: ${error.message} (an API key may be needed)`);
  }
}

init();
