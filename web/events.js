// The event stream of one call (ws /v1/calls/{id}/events: the call's history, then live), for
// any page that follows a call. After a drop it reconnects with backoff and resumes with
// ?after_seq= the last event it saw, so each event reaches the page once and in order (one a
// resumed stream repeats is skipped). It stops for good when the call is over or the server
// refuses the page.
//
//   const stream = followCall(callId, {
//     event(e) {},          // each new event (and the seq-less notices: `error` to this screen)
//     connecting(lastSeq) {}, // a socket is being opened (lastSeq > 0: resuming)
//     open() {},            // it opened
//     closed(close) {},     // it closed (before one of the three below)
//     retry(delay) {},      // dropped: reconnecting in `delay` ms
//     refused(error, code) {}, // the server refused (4401/4403, bad_request): stopped
//     ended() {},           // the call is over and its stream done: stopped
//   });
//   stream.start(); stream.open; stream.send({...}); stream.lastSeq; stream.connections
import { wsUrl } from "./common.js";

const BACKOFF_MIN = 500, BACKOFF_MAX = 5000;
const HEALTHY_MS = 5000; // a connection that stays up this long (or brings events) resets the backoff

export function followCall(callId, on = {}) {
  const path = "/v1/calls/" + encodeURIComponent(callId) + "/events";
  let socket = null;
  let lastSeq = 0;
  let connections = 0;
  let ended = false; // call.ended seen, or the server closed the stream as done
  let stopped = false; // no more reconnecting (ended, or refused)
  let backoff = BACKOFF_MIN;
  let retryTimer = null;
  let lastError = null; // the last seq-less `error` message on this socket

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (stopped) return;
    const ws = new WebSocket(wsUrl(path, { after_seq: lastSeq }));
    socket = ws;
    lastError = null;
    if (on.connecting) on.connecting(lastSeq);
    let healthy = null;
    ws.onopen = () => {
      if (socket !== ws) return;
      connections += 1;
      healthy = setTimeout(() => { backoff = BACKOFF_MIN; }, HEALTHY_MS);
      if (on.open) on.open();
    };
    ws.onmessage = (message) => {
      if (socket !== ws) return;
      backoff = BACKOFF_MIN;
      let event;
      try { event = JSON.parse(message.data); } catch (_) { return; }
      received(event);
    };
    ws.onclose = (close) => {
      clearTimeout(healthy);
      if (socket !== ws) return;
      socket = null;
      closed(close);
    };
  }

  function received(event) {
    if (typeof event.seq === "number" && event.seq > 0) {
      if (event.seq <= lastSeq) return; // already passed on (a resumed stream never repeats)
      lastSeq = event.seq;
    }
    if (event.type === "call.ended") ended = true;
    else if (event.type === "error" && !event.seq) lastError = event; // to this screen only
    if (on.event) on.event(event);
  }

  function closed(close) {
    if (on.closed) on.closed(close);
    if (ended) return finish();
    const code = close.code;
    const error = lastError;
    if (code === 4401 || code === 4403 || (error && error.code === "bad_request")) {
      stopped = true;
      if (on.refused) on.refused(error, code);
      return;
    }
    if (code === 1000 && !(error && error.code === "slow_consumer")) {
      // the server closes with 1000 after call.ended (a stored call replayed, or one already over)
      ended = true;
      return finish();
    }
    const delay = error && error.code === "slow_consumer" ? 0 : backoff;
    backoff = Math.min(backoff * 2, BACKOFF_MAX);
    if (on.retry) on.retry(delay);
    retryTimer = setTimeout(connect, delay);
  }

  function finish() {
    stopped = true;
    if (on.ended) on.ended();
  }

  return {
    start() {
      // Network back: don't wait for the backoff.
      window.addEventListener("online", () => { if (retryTimer) connect(); });
      connect();
    },
    // Send a message up the open socket (feedback); false when there is none right now.
    send(message) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(JSON.stringify(message));
      return true;
    },
    get open() { return !!socket && socket.readyState === WebSocket.OPEN; },
    get lastSeq() { return lastSeq; },
    get connections() { return connections; },
    get ended() { return ended; },
  };
}
