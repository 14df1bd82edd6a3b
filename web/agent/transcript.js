// Agent screen: the live transcript. A line per utterance and party, in order of start time;
// partials in italics until their final, revised and relabeled lines changed in place; follows
// the newest line unless the agent scrolled up (then "↓ Latest").
import { clock, el } from "../common.js";
import { $, connected, fill, state } from "./page.js";

const CHANNEL_NAMES = { customer: "Customer", agent: "Agent" };
const transcript = $("transcript");
const lines = new Map(); // "channel:utterance" → line
const order = []; // lines sorted by start time
let follow = true;
let scrollQueued = false;

function channelName(channel) {
  return CHANNEL_NAMES[channel] || (channel ? channel[0].toUpperCase() + channel.slice(1) : "Speaker");
}

function before(a, b) {
  if (a.start !== b.start) return a.start < b.start;
  if (a.channel !== b.channel) return a.channel < b.channel;
  return a.utterance < b.utterance;
}

function place(line) {
  const old = order.indexOf(line);
  if (old >= 0) order.splice(old, 1);
  let i = order.length;
  while (i > 0 && before(line, order[i - 1])) i -= 1;
  order.splice(i, 0, line);
  const next = order[i + 1];
  if (line.el.nextElementSibling !== (next ? next.el : null) || !line.el.parentNode) {
    transcript.insertBefore(line.el, next ? next.el : null);
  }
}

function lineFor(event) {
  const key = event.channel + ":" + event.utterance;
  let line = lines.get(key);
  if (!line) {
    const text = el("p", { class: "text" });
    const node = el("div", { class: "line " + (event.channel === "customer" ? "customer" : event.channel === "agent" ? "agent" : "other"), "data-channel": event.channel, "data-utterance": event.utterance },
      el("div", { class: "speaker" }, el("span", { class: "name" }, channelName(event.channel)), " ", el("span", { class: "at" }, clock(event.start))),
      text);
    line = { key, channel: event.channel, utterance: event.utterance, start: event.start, el: node, text, final: false };
    lines.set(key, line);
    place(line);
  } else if (line.start !== event.start) {
    line.start = event.start;
    line.el.querySelector(".at").textContent = clock(event.start);
    place(line);
  }
  line.el.dataset.start = String(event.start);
  return line;
}

function dropLine(line) {
  lines.delete(line.key);
  const i = order.indexOf(line);
  if (i >= 0) order.splice(i, 1);
  line.el.remove();
}

export function onPartial(event) {
  const existing = lines.get(event.channel + ":" + event.utterance);
  if (existing && existing.final) return; // a late partial never overwrites the final
  if (!event.text) { // withdrawn: it was no speech
    if (existing) dropLine(existing);
    updatePlaceholder();
    return;
  }
  const line = lineFor(event);
  line.el.classList.add("partial");
  line.el.setAttribute("aria-busy", "true");
  const stable = event.stable && event.text.startsWith(event.stable) ? event.stable : "";
  fill(line.text,
    stable ? el("span", { class: "stable" }, stable) : null,
    el("span", { class: "unstable" }, event.text.slice(stable.length)),
  );
  transcriptChanged();
}

export function onFinal(event) {
  const existing = lines.get(event.channel + ":" + event.utterance);
  if (!event.text) {
    if (existing) dropLine(existing);
    updatePlaceholder();
    return;
  }
  const line = lineFor(event);
  line.final = true;
  line.el.classList.remove("partial");
  line.el.classList.add("final");
  line.el.removeAttribute("aria-busy");
  line.text.textContent = event.text;
  if (typeof event.confidence === "number" && event.confidence < 0.4) {
    line.el.classList.add("unsure");
    line.el.title = "Low recognition confidence (" + Math.round(event.confidence * 100) + "%)";
  }
  transcriptChanged();
}

// The accurate model heard the utterance again with the audio around it: its text replaces
// the live one (kept in the tooltip).
export function onRevised(event) {
  const line = lines.get(event.channel + ":" + event.utterance);
  if (!line || !line.final || !event.text) return;
  line.text.textContent = event.text;
  line.el.classList.add("revised");
  line.el.classList.remove("unsure");
  line.el.title = "Revised by the accurate model; heard live as: “" + event.live_text + "”";
  transcriptChanged();
}

// A one-channel (diarized) call: earlier lines were the other party's. Each moves over,
// keeping its text and place in time.
export function onRelabeled(event) {
  for (const change of event.changes || []) {
    const line = lines.get(change.previous + ":" + change.utterance);
    if (!line) continue;
    lines.delete(line.key);
    line.channel = change.channel;
    line.key = change.channel + ":" + change.utterance;
    lines.set(line.key, line);
    line.el.classList.remove("customer", "agent", "other");
    line.el.classList.add(change.channel === "customer" ? "customer" : change.channel === "agent" ? "agent" : "other");
    line.el.dataset.channel = change.channel;
    line.el.querySelector(".name").textContent = channelName(change.channel);
    line.el.title = "Moved to the " + channelName(change.channel) + " after hearing more of the call";
  }
  transcriptChanged();
}

export function clearPendingPartials() {
  for (const line of [...lines.values()]) if (!line.final) dropLine(line);
}

function transcriptChanged() {
  updatePlaceholder();
  if (scrollQueued) return;
  scrollQueued = true;
  requestAnimationFrame(() => {
    scrollQueued = false;
    if (follow) transcript.scrollTop = transcript.scrollHeight;
    else $("jump").hidden = false;
  });
}

transcript.addEventListener("scroll", () => {
  follow = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
  if (follow) $("jump").hidden = true;
}, { passive: true });

$("jump").addEventListener("click", () => {
  follow = true;
  transcript.scrollTop = transcript.scrollHeight;
  $("jump").hidden = true;
});

export function showPlaceholder(text, bad = false) {
  const p = $("transcript-empty");
  p.textContent = text;
  p.classList.toggle("bad", bad);
  p.hidden = false;
}

export function updatePlaceholder() {
  const p = $("transcript-empty");
  if (lines.size) { p.hidden = true; return; }
  if (state.ended) showPlaceholder(state.started ? "The call ended; nothing was said." : "The call is over.");
  else if (state.started) showPlaceholder("Call started, listening…");
  else if (connected()) showPlaceholder("Waiting for the call to start…");
}
