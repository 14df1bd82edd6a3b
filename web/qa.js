// QA search: full-text search and filters over stored calls. The filters live in the page URL
// (?q=...&agent=...&offset=...) so a search can be bookmarked, shared and navigated with Back.
import { api, link, el, clock } from "./common.js";

(() => {
  const FIELDS = ["q", "from", "to", "agent", "customer", "intent", "category", "sentiment", "alerts", "checklist"];
  const PAGE = 25;

  const $ = (id) => document.getElementById(id);
  const form = $("filters");
  const body = $("results").tBodies[0];
  const knownIntents = new Set();
  const knownCategories = new Set();
  let generation = 0;

  for (const a of document.querySelectorAll("a[data-href]")) a.href = link(a.dataset.href);

  function fromUrl() {
    const params = new URLSearchParams(location.search);
    for (const name of FIELDS) form.elements[name].value = params.get(name) || "";
    const offset = parseInt(params.get("offset") || "0", 10);
    return Number.isFinite(offset) && offset > 0 ? offset : 0;
  }

  function formParams() {
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  function go(offset, replace = false) {
    const params = formParams();
    if (offset > 0) params.set("offset", String(offset));
    const query = params.toString();
    const url = link("/qa" + (query ? "?" + query : ""));
    history[replace ? "replaceState" : "pushState"](null, "", url);
    search(offset);
  }

  function showError(error) {
    const box = $("error");
    if (!error) { box.hidden = true; return; }
    const title = error.status === 401 ? "Sign-in needed (401)"
      : error.status === 403 ? "Not allowed (403)"
      : error.status === 400 ? "Check the filters"
      : error.status ? "The server answered " + error.status : "Cannot reach the callcue server";
    const hint = error.status === 401 ? " Open this page with ?token=YOUR_TOKEN." : "";
    box.replaceChildren(el("strong", {}, title), String(error.message || error) + hint);
    box.hidden = false;
  }

  function started(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const sameYear = d.getFullYear() === new Date().getFullYear();
    return d.toLocaleString([], { year: sameYear ? undefined : "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
  }

  function words(id) { return String(id).replaceAll("_", " "); }

  function row(call) {
    const href = link("/qa/" + encodeURIComponent(call.id));
    const label = call.sentiment_label;
    const cls = label === "negative" ? "mood-neg" : label === "positive" ? "mood-pos" : "mood-neu";
    const list = call.checklist || { done: 0, total: 0 };
    const complete = list.total > 0 && list.done === list.total;
    (call.intents || []).forEach((i) => knownIntents.add(i));
    (call.categories || []).forEach((c) => knownCategories.add(c));
    const tr = el("tr", { class: "link-row" + (call.alerts > 0 ? " alert-row" : ""), "data-call-id": call.id },
      el("td", { class: "nowrap" }, el("a", { class: "row-link", href, title: "Call " + call.id }, started(call.started_at)),
        el("div", { class: "small muted" }, call.id)),
      el("td", { class: "right num" }, call.outcome === "in_progress"
        ? el("span", { class: "muted", title: "so far (still live)" }, clock((Date.now() - Date.parse(call.started_at)) / 1000))
        : clock(call.duration)),
      el("td", {}, call.agent || el("span", { class: "muted" }, "—")),
      el("td", { class: "nowrap" }, call.customer_name || el("span", { class: "muted" }, call.customer_id || "Unknown")),
      el("td", { class: "intents" }, (call.intents || []).length || (call.categories || []).length
        ? [...(call.intents || []).map((i) => el("span", { class: "pill", title: "intent " + i }, words(i))),
          ...(call.categories || []).map((c) => el("span", { class: "pill category", title: "category " + c }, words(c)))]
        : el("span", { class: "muted" }, "—")),
      el("td", { class: label ? cls : "muted" }, label || "—"),
      el("td", {}, call.alerts > 0 ? el("span", { class: "pill alert" }, call.alerts) : el("span", { class: "muted" }, "0")),
      el("td", { class: "num" }, list.total
        ? el("span", { class: "pill " + (complete ? "ok" : "warn"), title: complete ? "complete" : "incomplete" }, `${list.done}/${list.total}`)
        : el("span", { class: "muted" }, "—")),
      el("td", {}, el("span", { class: "pill " + (call.outcome === "in_progress" ? "" : "quiet") },
        call.outcome === "in_progress" ? "live" : words(call.outcome || "—"))),
    );
    tr.addEventListener("click", (event) => { if (!event.target.closest("a")) location.href = href; });
    return tr;
  }

  // The page URL is the search (a bookmark with a bad value gets the server's explanation).
  function urlParams() {
    const current = new URLSearchParams(location.search);
    const params = new URLSearchParams();
    for (const name of FIELDS) if (current.get(name)) params.set(name, current.get(name).trim());
    return params;
  }

  async function search(offset) {
    const mine = ++generation;
    const params = urlParams();
    params.set("limit", String(PAGE));
    params.set("offset", String(offset));
    $("status").textContent = "Searching…";
    try {
      const data = await api("/v1/calls?" + params.toString());
      if (mine !== generation) return;
      showError(null);
      const calls = data.calls || [];
      body.replaceChildren(...calls.map(row));
      $("results").hidden = calls.length === 0;
      $("empty").hidden = calls.length > 0;
      const filtered = [...urlParams().keys()].length > 0;
      const one = data.total === 1;
      $("status").textContent = `${data.total} call${one ? "" : "s"}` + (filtered ? (one ? " matches" : " match") : " stored");
      $("range").textContent = calls.length ? `${data.offset + 1}–${data.offset + calls.length} of ${data.total}` : "";
      $("prev").disabled = data.offset <= 0;
      $("next").disabled = data.next_offset === null || data.next_offset === undefined;
      $("next").dataset.offset = data.next_offset ?? "";
      $("prev").dataset.offset = String(Math.max(0, data.offset - data.limit));
      $("pager").hidden = data.total <= calls.length && data.offset === 0;
      $("intent-list").replaceChildren(...[...knownIntents].sort().map((i) => el("option", { value: i })));
      $("category-list").replaceChildren(...[...knownCategories].sort().map((c) => el("option", { value: c })));
      sessionStorage.setItem("callcue.qa.search", location.search);
    } catch (error) {
      if (mine !== generation) return;
      showError(error);
      body.replaceChildren();
      $("results").hidden = true;
      $("empty").hidden = true;
      $("pager").hidden = true;
      $("status").textContent = "";
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); go(0); });
  for (const name of ["sentiment", "alerts", "checklist"]) {
    form.elements[name].addEventListener("change", () => go(0));
  }
  $("clear").addEventListener("click", () => { form.reset(); go(0); form.elements.q.focus(); });
  $("prev").addEventListener("click", () => go(parseInt($("prev").dataset.offset || "0", 10)));
  $("next").addEventListener("click", () => go(parseInt($("next").dataset.offset || "0", 10)));
  window.addEventListener("popstate", () => search(fromUrl()));

  search(fromUrl());
})();
