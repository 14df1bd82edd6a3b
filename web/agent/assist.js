// Agent screen: the assist cards. Suggested replies (the newest three numbered for the keys 1–3),
// knowledge articles and next best actions, each with its buttons; the agent's feedback goes up
// the event stream and a card changes state only on the server's echo (feedback events).
import { el } from "../common.js";
import { $, readonly, sendUp, state, toast } from "./page.js";

const TOP_ACTIONS = 2;
const TOP_REPLIES = 3; // numbered 1–3, the rest under "Earlier suggestions"
const MAX_ARTICLES = 3;
const cards = new Map(); // "kind:id" → card

function cardKey(kind, id) { return kind + ":" + id; }

function button(label, action, card, extra = {}) {
  return el("button", Object.assign({ type: "button", "data-feedback": action, onclick: () => act(card, action) }, extra), label);
}

export function onSuggestion(event) {
  upsertCard(event.kind === "article" ? "article" : "reply", event);
}

export function onAction(event) {
  upsertCard("action", event);
}

// A card is made on its first event and rebuilt on later ones (a changed text, a new seq),
// unless the agent dismissed it.
function upsertCard(kind, event) {
  const key = cardKey(kind, event.id);
  let card = cards.get(key);
  if (card && card.state === "dismissed") return;
  if (!card) {
    card = { kind, id: event.id, state: "", copied: false, el: null };
    cards.set(key, card);
  }
  card.seq = event.seq || 0;
  card.event = event;
  buildCard(card);
  card.el.classList.add("fresh");
  setTimeout(() => card.el && card.el.classList.remove("fresh"), 1600);
  if (kind === "reply") renderReplies();
  else if (kind === "article") renderArticles();
  else renderActions();
}

function buildCard(card) {
  const e = card.event;
  const focused = card.el && card.el.contains(document.activeElement) ? document.activeElement.dataset.feedback : null;
  let body;
  let buttons = null;
  if (card.kind === "reply") {
    body = [el("p", { class: "card-text" }, e.text)];
    if (!readonly) buttons = [
      button("Use", "accepted", card, { class: "primary fb-live" }),
      button("Copy", "copied", card, { class: "fb-copy" }),
      button("✕", "dismissed", card, { class: "icon fb-live", "aria-label": "Dismiss this suggestion", title: "Dismiss" }),
    ];
  } else if (card.kind === "article") {
    body = [
      el("p", { class: "card-title" }, e.title),
      e.body ? el("p", { class: "card-body" }, e.body) : null,
    ];
    const open = e.link ? el("a", {
      class: "button", href: e.link, target: "_blank", rel: "noopener noreferrer",
      onclick: () => { if (!readonly && !state.ended && card.state === "") send(card, "accepted"); },
    }, "Open ↗") : null;
    buttons = readonly ? (open ? [open] : null) : [
      open,
      button("Used", "accepted", card, { class: "fb-live" }),
      button("✕", "dismissed", card, { class: "icon fb-live", "aria-label": "Dismiss this article", title: "Dismiss" }),
    ];
  } else {
    const prio = Math.max(1, Math.min(5, e.priority || 3));
    body = [
      el("p", { class: "card-text" }, el("span", { class: "prio", title: "Priority " + prio }, "P" + prio), " ", e.action),
    ];
    if (!readonly) buttons = [
      button("Done", "done", card, { class: "primary fb-live" }),
      button("Dismiss", "dismissed", card, { class: "fb-live" }),
    ];
  }
  const node = el("li", {
    class: "card " + card.kind + (card.kind === "action" ? " prio-" + Math.max(1, Math.min(5, e.priority || 3)) : ""),
    "data-kind": card.kind, "data-id": card.id,
  },
  body,
  el("div", { class: "card-foot" },
    e.reason ? el("p", { class: "why" }, (card.kind === "action" ? "Why: " : "") + e.reason) : null,
    el("span", { class: "card-status", "aria-live": "polite" }),
    buttons ? el("div", { class: "card-buttons" }, buttons) : null));
  if (card.el && card.el.parentNode) card.el.replaceWith(node);
  card.el = node;
  paintState(card);
  if (focused) {
    const again = node.querySelector('[data-feedback="' + focused + '"]');
    if (again) again.focus({ preventScroll: true });
  }
}

const STATUS_TEXT = { used: "✓ Used", done: "✓ Done", pending: "sending…" };

function paintState(card) {
  const node = card.el;
  if (!node) return;
  node.dataset.state = card.state;
  node.classList.toggle("is-copied", !!card.copied);
  const status = node.querySelector(".card-status");
  status.textContent = STATUS_TEXT[card.pending ? "pending" : card.state] || (card.copied ? "copied" : "");
  for (const b of node.querySelectorAll("button[data-feedback]")) {
    b.disabled = !!card.pending || card.state === "used" || card.state === "done";
    if (b.dataset.feedback === "copied") b.disabled = !!card.pending;
  }
}

// Re-order a list's children without losing keyboard focus.
function arrange(container, items) {
  const active = document.activeElement;
  items.forEach((card, i) => {
    if (container.children[i] !== card.el) container.insertBefore(card.el, container.children[i] || null);
  });
  while (container.children.length > items.length) container.lastElementChild.remove();
  if (active && active !== document.activeElement && document.contains(active)) active.focus({ preventScroll: true });
}

function visible(kind) {
  return [...cards.values()].filter((c) => c.kind === kind && c.state !== "dismissed" && c.el);
}

let numbered = []; // reply cards reachable by the keys 1–3

export function renderReplies() {
  const all = visible("reply").sort((a, b) => b.seq - a.seq);
  const top = all.slice(0, TOP_REPLIES), older = all.slice(TOP_REPLIES);
  arrange($("replies"), top);
  arrange($("replies-older"), older);
  $("replies-more").hidden = older.length === 0;
  $("replies-more-count").textContent = "(" + older.length + ")";
  $("replies-empty").hidden = all.length > 0;
  numbered = [];
  for (const card of all) {
    const use = card.el.querySelector('[data-feedback="accepted"]');
    const old = use && use.querySelector("kbd");
    if (old) old.remove();
    if (use && top.includes(card) && card.state === "" && !state.ended && numbered.length < 3) {
      numbered.push(card);
      use.append(el("kbd", { "aria-hidden": "true" }, String(numbered.length)));
      use.setAttribute("aria-keyshortcuts", String(numbered.length));
    } else if (use) use.removeAttribute("aria-keyshortcuts");
  }
}

function renderArticles() {
  const all = visible("article").sort((a, b) => b.seq - a.seq).slice(0, MAX_ARTICLES);
  for (const card of visible("article")) if (!all.includes(card)) card.el.remove();
  arrange($("articles"), all);
  $("articles-panel").hidden = all.length === 0;
}

// The two most urgent open actions up front; the rest, and those done, one click away.
export function renderActions() {
  const all = visible("action");
  const todo = all.filter((c) => c.state !== "done").sort((a, b) => a.event.priority - b.event.priority || b.seq - a.seq);
  const done = all.filter((c) => c.state === "done").sort((a, b) => b.seq - a.seq);
  const top = todo.slice(0, TOP_ACTIONS), rest = todo.slice(TOP_ACTIONS);
  arrange($("actions"), top);
  arrange($("actions-older"), rest.concat(done));
  $("actions-more").hidden = rest.length + done.length === 0;
  $("actions-more-count").textContent = "(" + [rest.length ? rest.length + " open" : "", done.length ? done.length + " done" : ""].filter(Boolean).join(", ") + ")";
  $("actions-count").textContent = todo.length ? String(todo.length) : "";
  $("actions-empty").hidden = top.length > 0;
  $("actions-empty").textContent = all.length ? "All done." : "Nothing to do yet.";
}

function rerender(kind) {
  if (kind === "reply") renderReplies();
  else if (kind === "article") renderArticles();
  else renderActions();
}

// ------------------------------------------------------------------ feedback
function send(card, action) {
  if (readonly || state.ended) return false;
  if (!sendUp({ type: "feedback", kind: card.kind, id: card.id, action })) {
    toast("Not connected: reconnecting, try again in a moment.");
    return false;
  }
  return true;
}

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) { /* fall back below */ }
  const area = el("textarea", { class: "sr-only", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
  area.remove();
  return ok;
}

async function act(card, action) {
  if (readonly) return;
  if (action === "copied") {
    const text = card.event.text || [card.event.title, card.event.body].filter(Boolean).join("\n");
    const ok = await copyText(text);
    if (!ok) {
      selectText(card.el.querySelector(".card-text, .card-body"));
      toast("Copy is blocked here: the text is selected, press Ctrl+C.");
    } else toast("Copied.");
    if (ok && card.state === "" && !card.copied) send(card, "copied");
    return;
  }
  if (card.pending) return;
  if (!send(card, action)) return;
  if (action === "dismissed") { // gone at once; the echo confirms it
    dismiss(card);
    return;
  }
  card.pending = action;
  card.pendingTimer = setTimeout(() => {
    if (card.pending) { card.pending = null; paintState(card); toast("No answer from the server; try again."); }
  }, 6000);
  paintState(card);
}

function selectText(node) {
  if (!node) return;
  const range = document.createRange();
  range.selectNodeContents(node);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}

function dismiss(card) {
  const focusNext = card.el && card.el.contains(document.activeElement);
  const sibling = card.el && (card.el.nextElementSibling || card.el.previousElementSibling);
  card.state = "dismissed";
  card.pending = null;
  if (card.el) card.el.remove();
  card.el = null;
  rerender(card.kind);
  if (focusNext && sibling) {
    const b = sibling.querySelector("button:not([disabled])");
    if (b) b.focus({ preventScroll: true });
  }
}

// A press that got no echo (connection lost, or refused) can be made again.
export function clearPending() {
  for (const card of cards.values()) {
    if (card.pending) {
      card.pending = null;
      clearTimeout(card.pendingTimer);
      paintState(card);
    }
  }
}

export function onFeedback(event) {
  const card = cards.get(cardKey(event.kind, event.target));
  if (!card || card.state === "dismissed") return;
  if (card.pending) { clearTimeout(card.pendingTimer); card.pending = null; }
  switch (event.action) {
    case "dismissed":
      dismiss(card);
      return;
    case "accepted":
    case "done":
      card.state = card.kind === "action" ? "done" : "used";
      break;
    case "copied":
      card.copied = true;
      break;
    default:
      break;
  }
  paintState(card);
  rerender(card.kind);
}

// The keys 1–3 use the numbered suggested replies.
document.addEventListener("keydown", (e) => {
  if (readonly || state.ended || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  const t = e.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  if (/^[1-3]$/.test(e.key)) {
    const card = numbered[Number(e.key) - 1];
    if (card) { e.preventDefault(); act(card, "accepted"); }
  }
});
