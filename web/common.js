// callcue pages: shared helpers (no build step, no framework), an ES module every page imports:
// import { api, el } from "./common.js" (served as /static/common.js).

// Token: ?token= on the page URL (kept for the tab in sessionStorage), else none (a server
// without tokens lets loopback clients in).
const params = new URLSearchParams(location.search);
if (params.get("token")) sessionStorage.setItem("callcue.token", params.get("token"));
export const token = () => sessionStorage.getItem("callcue.token") || "";

export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  if (options.body && typeof options.body !== "string") {
    headers["Content-Type"] = "application/json";
    options = Object.assign({}, options, { body: JSON.stringify(options.body) });
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  const type = response.headers.get("content-type") || "";
  if (response.status === 204) return null;
  return type.includes("application/json") ? response.json() : response.text();
}

export function wsUrl(path, query = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  if (token()) url.searchParams.set("token", token());
  return url.toString();
}

// Link to another page keeping the token.
export function link(path) {
  if (!token()) return path;
  const url = new URL(path, location.href);
  url.searchParams.set("token", token());
  return url.pathname + url.search;
}

export function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Sentiment score (-1..1) → CSS class and word.
export function mood(score) {
  if (score === null || score === undefined) return ["mood-none", "—"];
  // the same cut-offs as the stored call label (store/calls.py): ±0.2
  if (score < -0.2) return ["mood-neg", "negative"];
  if (score > 0.2) return ["mood-pos", "positive"];
  return ["mood-neu", "neutral"];
}

