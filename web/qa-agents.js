// QA agents: per agent over a period (GET /v1/agents?from=&to=), the period in the page URL.
import { api, link, el, clock } from "./common.js";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("period");

  for (const a of document.querySelectorAll("a[data-href]")) a.href = link(a.dataset.href);

  function showError(error) {
    const box = $("error");
    if (!error) { box.hidden = true; return; }
    const title = error.status === 401 ? "Sign-in needed (401)"
      : error.status === 403 ? "Not allowed (403)"
      : error.status === 400 ? "Check the period"
      : error.status ? "The server answered " + error.status : "Cannot reach the callcue server";
    const hint = error.status === 401 ? " Open this page with ?token=YOUR_TOKEN (qa, supervisor or admin role)." : "";
    box.replaceChildren(el("strong", {}, title), String(error.message || error) + hint);
    box.hidden = false;
  }

  const dash = () => el("span", { class: "muted" }, "—");
  const signed = (v) => (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toFixed(2);

  function row(agent) {
    const search = link("/qa?agent=" + encodeURIComponent(agent.agent));
    return el("tr", { "data-agent": agent.agent },
      el("td", {}, el("a", { href: search, title: "This agent's calls" }, agent.agent)),
      el("td", { class: "right num" }, String(agent.calls)),
      el("td", { class: "right num" }, agent.average_handle_seconds === null ? dash() : clock(agent.average_handle_seconds)),
      el("td", { class: "right num" }, agent.agent_talk_share === null ? dash() : Math.round(agent.agent_talk_share * 100) + "%"),
      el("td", { class: "right num" }, agent.average_score === null ? dash()
        : [agent.average_score.toFixed(0), el("span", { class: "muted small" }, ` (${agent.scored_calls} scored)`)]),
      el("td", { class: "right num" }, agent.customer_sentiment_change === null ? dash()
        : el("span", { class: agent.customer_sentiment_change < 0 ? "mood-neg" : "mood-pos" }, signed(agent.customer_sentiment_change))),
      el("td", { class: "right num" }, String(agent.suggestions_used)));
  }

  async function load() {
    const params = new URLSearchParams(location.search);
    for (const name of ["from", "to"]) form.elements[name].value = params.get(name) || "";
    const query = new URLSearchParams();
    for (const name of ["from", "to"]) if (params.get(name)) query.set(name, params.get(name));
    $("status").textContent = "Loading…";
    try {
      const data = await api("/v1/agents" + (query.toString() ? "?" + query : ""));
      showError(null);
      const agents = data.agents || [];
      $("agents").tBodies[0].replaceChildren(...agents.map(row));
      $("agents").hidden = agents.length === 0;
      $("empty").hidden = agents.length > 0;
      $("status").textContent = `${agents.length} agent${agents.length === 1 ? "" : "s"}`;
    } catch (error) {
      showError(error);
      $("status").textContent = "";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of ["from", "to"]) if (form.elements[name].value) params.set(name, form.elements[name].value);
    history.pushState(null, "", link("/qa/agents" + (params.toString() ? "?" + params : "")));
    load();
  });
  window.addEventListener("popstate", load);
  load();
})();
