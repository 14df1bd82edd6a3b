// Supervisor wallboard: every live call (polled every 2 s), alerts first, durations ticking;
// a row opens that call's agent screen read-only. Below: the calls that ended most recently.
import { api, link, el, clock, mood } from "./common.js";

(() => {
  const POLL_MS = 2000;
  const ENDED_MS = 10000;
  const SILENCE_WARN = 20; // seconds of nobody speaking that a supervisor should see

  const $ = (id) => document.getElementById(id);
  const liveBody = $("live").tBodies[0];
  const endedBody = $("ended").tBodies[0];
  const rows = new Map(); // call_id → {tr, call, base, at, shown}
  let stopped = false;
  let endedTimer = null;

  for (const a of document.querySelectorAll("a[data-href]")) a.href = link(a.dataset.href);

  function showError(error) {
    const box = $("error");
    if (!error) { box.hidden = true; box.textContent = ""; return; }
    const title = error.status === 401 ? "Sign-in needed (401)"
      : error.status === 403 ? "Not allowed (403)"
      : error.status ? "The server answered " + error.status
      : "Cannot reach the callcue server";
    const hint = error.status === 401 ? " Open this page with ?token=YOUR_TOKEN (supervisor role)." : "";
    box.replaceChildren(el("strong", {}, title), String(error.message || error) + hint);
    box.hidden = false;
  }

  function agentHref(id) { return link("/agent/" + encodeURIComponent(id) + "?readonly=1"); }

  function sentimentCell(score) {
    const [cls, word] = mood(score);
    const td = el("td", { class: "nowrap" });
    if (score === null || score === undefined) { td.append(el("span", { class: "muted" }, "—")); return td; }
    const width = Math.min(50, Math.abs(score) * 50);
    const bar = el("i", { style: `left:${score < 0 ? 50 - width : 50}%;width:${width}%;background:var(${
      cls === "mood-neg" ? "--neg" : cls === "mood-pos" ? "--pos" : "--neu"})` });
    td.append(el("span", { class: "meter", "aria-hidden": "true" }, bar),
      el("span", { class: cls }, word), " ", el("span", { class: "muted small num" }, (score > 0 ? "+" : "") + score.toFixed(2)));
    return td;
  }

  // "62 / 38 %": the customer's and the agent's share of the talk time (other channels: by name)
  function talkCell(talk) {
    const entries = Object.entries(talk || {});
    const total = entries.reduce((sum, [, v]) => sum + v, 0);
    if (!total) return el("td", { class: "muted" }, "—");
    const share = (v) => Math.round(v / total * 100);
    const known = "customer" in talk && "agent" in talk && entries.length === 2;
    const text = known
      ? share(talk.customer) + " / " + share(talk.agent) + " %"
      : entries.map(([c, v]) => c + " " + share(v) + "%").join(", ");
    return el("td", { class: "nowrap num", title: entries.map(([c, v]) => c + " " + v.toFixed(1) + " s").join(", ") }, text);
  }

  function buildRow(call) {
    const href = agentHref(call.call_id);
    const tr = el("tr", { class: "link-row", "data-call-id": call.call_id, title: "Open the agent screen (read-only)" });
    tr.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      location.href = href;
    });
    tr._href = href;
    return tr;
  }

  function fillRow(entry) {
    const { tr, call } = entry;
    tr.classList.toggle("alert-row", call.alerts > 0);
    const customer = el("td", {},
      call.customer || el("span", { class: "muted" }, "Unknown caller"),
      call.tier ? [" ", el("span", { class: "pill tier" }, call.tier)] : null);
    tr.replaceChildren(
      el("td", {}, el("a", { class: "row-link", href: tr._href }, call.agent || "Unassigned")),
      customer,
      el("td", { class: "right num duration" }, clock(entry.shown)),
      el("td", {}, call.intent_label || call.intent || el("span", { class: "muted" }, "—")),
      sentimentCell(call.sentiment),
      talkCell(call.talk_seconds),
      el("td", { class: "right num" + ((call.current_silence || 0) >= SILENCE_WARN ? " warn" : "") },
        call.current_silence === undefined ? "—" : Math.round(call.current_silence) + " s"),
      el("td", { class: "right num" }, call.overtalk_seconds === undefined ? "—" : call.overtalk_seconds.toFixed(1) + " s"),
      el("td", {}, call.alerts > 0
        ? el("span", { class: "pill alert" }, call.alerts + (call.alerts === 1 ? " alert" : " alerts"))
        : el("span", { class: "muted" }, "none")),
      el("td", { class: "muted" }, call.stage || "—"),
      el("td", { class: "small muted" }, call.call_id, call.source ? " · " + call.source : ""),
    );
  }

  function order(a, b) {
    const hot = (b.call.alerts > 0) - (a.call.alerts > 0);
    if (hot) return hot;
    return (a.call.started_at || 0) - (b.call.started_at || 0) || a.call.call_id.localeCompare(b.call.call_id);
  }

  function render(calls) {
    const now = performance.now();
    const seen = new Set();
    let ended = false;
    for (const call of calls) {
      seen.add(call.call_id);
      let entry = rows.get(call.call_id);
      if (!entry) {
        entry = { tr: buildRow(call), shown: 0 };
        rows.set(call.call_id, entry);
      }
      entry.call = call;
      entry.base = Number(call.duration) || 0;
      entry.at = now;
      entry.shown = Math.max(entry.shown, entry.base);
      fillRow(entry);
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) { entry.tr.remove(); rows.delete(id); ended = true; }
    }
    const sorted = [...rows.values()].sort(order);
    const current = [...liveBody.children];
    if (sorted.some((entry, i) => current[i] !== entry.tr)) liveBody.append(...sorted.map((e) => e.tr));

    const alerts = calls.filter((c) => c.alerts > 0).length;
    const negative = calls.filter((c) => mood(c.sentiment)[0] === "mood-neg").length;
    $("live-count").textContent = calls.length;
    $("alert-count").textContent = alerts;
    $("neg-count").textContent = negative;
    $("alert-stat").classList.toggle("hot", alerts > 0);
    $("live-empty").hidden = calls.length > 0;
    $("live").hidden = calls.length === 0;
    document.title = (calls.length ? `(${calls.length}) ` : "") + "Live calls · callcue supervisor";
    if (ended) refreshEndedSoon(800);
  }

  function tick() {
    const now = performance.now();
    for (const entry of rows.values()) {
      const value = entry.base + (now - entry.at) / 1000;
      if (Math.floor(value) > Math.floor(entry.shown)) {
        entry.shown = value;
        const cell = entry.tr.querySelector(".duration");
        if (cell) cell.textContent = clock(value);
      }
    }
  }

  async function poll() {
    if (stopped) return;
    try {
      const data = await api("/v1/calls/live");
      render(data.calls || []);
      showError(null);
      $("status").className = "status";
      $("status").textContent = "Updated " + new Date().toLocaleTimeString();
    } catch (error) {
      showError(error);
      $("status").className = "status bad";
      $("status").textContent = "Not updating";
      if (error.status === 401 || error.status === 403) { stopped = true; return; }
    }
    setTimeout(poll, POLL_MS);
  }

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" })
      : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  async function refreshEnded() {
    clearTimeout(endedTimer);
    try {
      const data = await api("/v1/calls?limit=30");
      const calls = (data.calls || []).filter((c) => c.outcome !== "in_progress").slice(0, 10);
      endedBody.replaceChildren(...calls.map((c) => {
        const href = link("/qa/" + encodeURIComponent(c.id));
        const label = c.sentiment_label;
        const cls = label === "negative" ? "mood-neg" : label === "positive" ? "mood-pos" : "mood-neu";
        const list = c.checklist || {};
        const tr = el("tr", { class: "link-row" + (c.alerts > 0 ? " alert-row" : ""), "data-call-id": c.id, title: "Open in QA" },
          el("td", { class: "nowrap" }, el("a", { class: "row-link", href }, when(c.ended_at || c.started_at))),
          el("td", {}, c.agent || el("span", { class: "muted" }, "—")),
          el("td", {}, c.customer_name || el("span", { class: "muted" }, "Unknown")),
          el("td", { class: "right num" }, clock(c.duration)),
          el("td", {}, c.intent ? c.intent.replaceAll("_", " ") : el("span", { class: "muted" }, "—")),
          el("td", { class: label ? cls : "muted" }, label || "—"),
          el("td", {}, c.alerts > 0 ? el("span", { class: "pill alert" }, c.alerts) : el("span", { class: "muted" }, "0")),
          el("td", { class: "num" }, list.total ? `${list.done}/${list.total}` : "—"),
          el("td", {}, el("span", { class: "pill quiet" }, c.outcome)),
        );
        tr.addEventListener("click", (event) => { if (!event.target.closest("a")) location.href = href; });
        return tr;
      }));
      $("ended-empty").hidden = calls.length > 0;
      $("ended").hidden = calls.length === 0;
    } catch (error) {
      $("ended-empty").hidden = false;
      $("ended-empty").textContent = "Could not load ended calls: " + error.message;
      $("ended").hidden = true;
      if (error.status === 401 || error.status === 403) return;
    }
    endedTimer = setTimeout(refreshEnded, ENDED_MS);
  }

  function refreshEndedSoon(ms) {
    clearTimeout(endedTimer);
    endedTimer = setTimeout(refreshEnded, ms);
  }

  setInterval(tick, 250);
  poll();
  refreshEnded();
})();
