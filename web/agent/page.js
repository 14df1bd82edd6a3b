// Agent screen: what its parts share. The call and mode from the address, the call's state as
// the events tell it, the connection (agent.js opens it), small DOM helpers and the toast.

export const $ = (id) => document.getElementById(id);
// replaceChildren that skips null/false (which it would otherwise show as "null")
export const fill = (node, ...children) => node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));

export const callId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const params = new URLSearchParams(location.search);
export const readonly = ["1", "true", "yes"].includes((params.get("readonly") || "").toLowerCase());

export const state = {
  started: false,
  ended: false,
  startedAt: null, // server time (ms) of call.started
  skew: null, // server clock − local clock (ms), from the freshest event
  duration: null,
  endReason: null,
};

// The call's event stream (events.js), once agent.js has opened it.
let stream = null;
export function useStream(opened) { stream = opened; }
export function connected() { return !!stream && stream.open; }
// A message up the open socket (feedback); false when not connected right now.
export function sendUp(message) { return !!stream && stream.send(message); }

let toastTimer = null;
export function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 3500);
}
