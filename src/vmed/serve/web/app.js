// vmed web UI: upload an image (rendered server-side, DICOM windowed), chat with streaming answers
// through the same /v1/chat/completions endpoint (and limits) as API clients, download the transcript
// as dialogue records (JSONL, one record per image).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: "vmed",
  image: null,        // {dataUrl, name, width, height}
  segments: [],       // [{image: name|null, turns: [{question, answer}]}], one per image
  busy: false,
};

function currentSegment() {
  if (!state.segments.length) state.segments.push({ image: state.image ? state.image.name : null, turns: [] });
  return state.segments[state.segments.length - 1];
}

function setStatus(text) { $("status").textContent = text; }

function addBubble(role, text) {
  $("empty").hidden = true;
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

function addDivider(text, dataUrl) {
  $("empty").hidden = true;
  const div = document.createElement("div");
  div.className = "divider";
  if (dataUrl) { const img = document.createElement("img"); img.src = dataUrl; img.alt = ""; div.appendChild(img); }
  div.appendChild(document.createTextNode(text));
  $("log").appendChild(div);
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON */ }
  return "HTTP " + response.status;
}

async function loadPresets() {
  try {
    const r = await fetch("/v1/images/presets");
    const { presets } = await r.json();
    for (const [name, w] of Object.entries(presets)) {
      const opt = document.createElement("option");
      opt.value = name;
      opt.textContent = `${name} (C ${w.center}, W ${w.width})`;
      $("preset").appendChild(opt);
    }
    const models = await (await fetch("/v1/models")).json();
    state.model = models.data[0].id;
    setStatus("model: " + state.model);
  } catch (e) {
    setStatus("server unreachable");
  }
}

async function uploadImage(file) {
  if (!file) return;
  const preset = $("preset").value;
  setStatus("rendering " + file.name + "…");
  const url = "/v1/images/render" + (preset ? "?preset=" + encodeURIComponent(preset) : "");
  const r = await fetch(url, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
  if (!r.ok) {
    addBubble("error", "Could not load " + file.name + ": " + (await errorMessage(r)));
    setStatus("model: " + state.model);
    return;
  }
  const rendered = await r.json();
  const switching = state.image !== null || (state.segments.length && currentSegment().turns.length);
  state.image = { dataUrl: rendered.data_url, name: file.name, width: rendered.width, height: rendered.height, file };
  $("preview-img").src = rendered.data_url;
  $("preview-caption").textContent = `${file.name} · ${rendered.width}×${rendered.height}`;
  $("preview").hidden = false;
  $("drop-text").textContent = "Choose or drop another image";
  // A new image starts a new dialogue (the model sees one image); the screen keeps the earlier one.
  state.segments.push({ image: file.name, turns: [] });
  addDivider((switching ? "Switched to " : "Image: ") + file.name, rendered.data_url);
  setStatus("model: " + state.model);
  $("question").focus();
}

function buildMessages(question) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  const seg = currentSegment();
  const turns = seg.turns.concat([{ question, answer: null }]);
  turns.forEach((t, i) => {
    const content = [{ type: "text", text: t.question }];
    if (i === 0 && state.image) content.unshift({ type: "image_url", image_url: { url: state.image.dataUrl } });
    messages.push({ role: "user", content });
    if (t.answer !== null) messages.push({ role: "assistant", content: t.answer });
  });
  return messages;
}

async function ask(question) {
  const seg = currentSegment();
  addBubble("user", question);
  const bubble = addBubble("assistant pending", "");
  state.busy = true;
  $("send").disabled = true;
  let answer = "";
  try {
    const body = {
      model: state.model,
      messages: buildMessages(question),
      stream: true,
      max_tokens: parseInt($("max-tokens").value, 10) || 128,
      temperature: parseFloat($("temperature").value) || 0,
    };
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(await errorMessage(r));
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let done = false;
    while (!done) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let sep;
      while ((sep = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, sep).trim();
        buffer = buffer.slice(sep + 2);
        if (!event.startsWith("data:")) continue;
        const data = event.slice(5).trim();
        if (data === "[DONE]") { done = true; break; }
        const parsed = JSON.parse(data);
        if (parsed.error) throw new Error(parsed.error.message);
        const delta = parsed.choices && parsed.choices[0] && parsed.choices[0].delta;
        if (delta && delta.content) {
          answer += delta.content;
          bubble.textContent = answer;
          $("log").scrollTop = $("log").scrollHeight;
        }
      }
    }
    bubble.classList.remove("pending");
    if (!answer) bubble.textContent = "(empty answer)";
    seg.turns.push({ question, answer });
  } catch (e) {
    bubble.className = "msg error";
    bubble.textContent = "Error: " + e.message;
  } finally {
    state.busy = false;
    $("send").disabled = false;
  }
}

function resetChat() {
  state.segments = [];
  $("log").querySelectorAll(".msg, .divider").forEach((el) => el.remove());
  $("empty").hidden = false;
  if (state.image) { state.segments.push({ image: state.image.name, turns: [] }); addDivider("Image: " + state.image.name, state.image.dataUrl); }
}

function downloadTranscript() {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
  const lines = state.segments.filter((s) => s.turns.length).map((s, k) => JSON.stringify({
    id: `web/${stamp}-${k + 1}`,
    source: "web",
    split: "test",
    image: s.image,
    turns: s.turns.map((t) => ({ question: t.question, answer: t.answer, answer_type: "open" })),
    summary: null,
    meta: { model: state.model, created: new Date().toISOString() },
  }));
  const blob = new Blob([lines.join("\n") + (lines.length ? "\n" : "")], { type: "application/x-ndjson" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `vmed-transcript-${stamp}.jsonl`;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

$("file").addEventListener("change", (e) => uploadImage(e.target.files[0]));
$("preset").addEventListener("change", () => { if (state.image && state.image.file) uploadImage(state.image.file); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); uploadImage(e.dataTransfer.files[0]); });
$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("question").value.trim();
  if (!q || state.busy) return;
  $("question").value = "";
  ask(q);
});
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});
$("reset").addEventListener("click", resetChat);
$("download").addEventListener("click", downloadTranscript);
loadPresets();
