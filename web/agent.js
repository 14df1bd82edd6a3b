// Agent screen: /agent/{call_id}[?readonly=1]. One websocket (/v1/calls/{id}/events, followed
// with events.js: resumed after any drop); everything on screen is derived from the event stream.
// This module opens it, shows the connection and the call clock, and hands each event to the
// part of the screen that shows it (agent/*.js).
import { clock } from "./common.js";
import { followCall } from "./events.js";
import { addAlert, onAlert } from "./agent/alerts.js";
import { clearPending, onAction, onFeedback, onSuggestion, renderActions, renderReplies } from "./agent/assist.js";
import { onChecklist } from "./agent/checklist.js";
import { onEntities, onIntent, onSentiment, renderCustomer } from "./agent/context.js";
import { $, callId, readonly, state, toast, useStream } from "./agent/page.js";
import { onAnalytics } from "./agent/talk.js";
import {
  clearPendingPartials, onFinal, onPartial, onRelabeled, onRevised, showPlaceholder, updatePlaceholder,
} from "./agent/transcript.js";
import { onWrapup } from "./agent/wrapup.js";

document.body.classList.toggle("readonly", readonly);
$("readonly-badge").hidden = !readonly;
$("call-title").textContent = callId;
if (readonly) $("replies-keys").hidden = true;

// ------------------------------------------------------------------ connection
function setConn(kind, text) {
  const conn = $("conn");
  conn.dataset.state = kind;
  $("conn-text").textContent = text;
  document.body.dataset.conn = kind;
}

const stream = followCall(callId, {
  event: handle,
  connecting(lastSeq) { setConn("connecting", lastSeq ? "reconnecting…" : "connecting…"); },
  open: showLiveState,
  closed: clearPending,
  retry(delay) {
    setConn("retry", delay ? "reconnecting in " + (delay / 1000).toFixed(1).replace(/\.0$/, "") + " s…" : "reconnecting…");
  },
  refused(error, code) {
    setConn("error", (error && error.message) || "access refused (" + code + ")");
    showPlaceholder((error && error.message) || "This screen may not watch the call.", true);
  },
  ended() {
    state.ended = true;
    finish();
  },
});
useStream(stream);

function showLiveState() {
  if (state.ended) setConn("ended", "call ended");
  else if (!stream.open) return;
  else if (state.started) setConn("live", "live");
  else setConn("waiting", "waiting for the call to start");
  updatePlaceholder();
}

function finish() {
  document.body.classList.add("call-over");
  // node_failed: the server running the call died (several nodes); the transcript so far is kept
  setConn("ended", state.endReason === "node_failed" ? "call lost: its server failed" : "call ended");
  clearPending();
  updateClock();
  updatePlaceholder();
  renderActions();
  renderReplies();
}

// ------------------------------------------------------------------ events
const handlers = {
  "call.started": onStarted,
  "transcript.partial": onPartial,
  "transcript.final": onFinal,
  "transcript.revised": onRevised,
  "transcript.relabeled": onRelabeled,
  intent: onIntent,
  sentiment: onSentiment,
  entities: onEntities,
  alert: onAlert,
  suggestion: onSuggestion,
  action: onAction,
  checklist: onChecklist,
  feedback: onFeedback,
  "call.analytics": onAnalytics,
  "call.wrapup": onWrapup,
  "call.ended": onEnded,
  error: onError,
};

// Each new event, once, in order (events.js skips those a resumed stream repeats).
function handle(event) {
  if (typeof event.seq === "number" && event.seq > 0 && event.ts) {
    const skew = Date.parse(event.ts) - Date.now();
    if (!Number.isNaN(skew) && (state.skew === null || skew > state.skew)) state.skew = skew;
  }
  const handler = handlers[event.type];
  if (!handler) return;
  if (state.started && !state.ended) clockSoon();
  try {
    handler(event);
  } catch (err) {
    console.error("agent screen: could not show", event.type, err);
  }
}

function onError(event) {
  if (event.seq) { // an error of the call itself (published to every screen)
    addAlert({ severity: "warning", message: event.message || event.code, code: event.code });
    return;
  }
  // to this screen only (events.js reads from these why a socket closed)
  if (event.code === "bad_feedback") {
    clearPending();
    toast(event.message || "The server did not take that feedback.");
  }
}

function onStarted(event) {
  state.started = true;
  state.startedAt = Date.parse(event.ts) || null;
  renderCustomer(event.customer, event.metadata || {});
  showLiveState();
  updateClock();
}

function onEnded(event) {
  state.ended = true;
  state.duration = event.duration;
  state.endReason = event.reason;
  clearPendingPartials();
  finish();
}

// ------------------------------------------------------------------ clock
function updateClock() {
  let seconds = null;
  if (state.ended && typeof state.duration === "number") seconds = state.duration;
  else if (state.started && state.startedAt && !state.ended) seconds = (Date.now() + (state.skew || 0) - state.startedAt) / 1000;
  $("clock").textContent = seconds === null ? "" : clock(seconds);
}
setInterval(() => { if (state.started && !state.ended) updateClock(); }, 1000);
let clockQueued = false;
function clockSoon() {
  if (clockQueued) return;
  clockQueued = true;
  requestAnimationFrame(() => { clockQueued = false; updateClock(); });
}

// For tests and the curious: read-only view of where the stream is.
window.callcueAgent = Object.freeze({
  get lastSeq() { return stream.lastSeq; },
  get connections() { return stream.connections; },
  get ended() { return state.ended; },
  readonly,
});

if (!callId) {
  setConn("error", "no call id in the address");
  showPlaceholder("Open /agent/CALL_ID to follow a call.", true);
} else {
  stream.start();
}
