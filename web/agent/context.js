// Agent screen: who is calling and how it goes. The customer card (from call.started), the
// intent and call stage, the customer's sentiment gauge and trend line, the agent's, the glance
// in the header bar, and the entities heard.
import { el, mood } from "../common.js";
import { $, callId, fill } from "./page.js";

let caller = null; // the caller's record in the customer directory (call.started), if known

export function renderCustomer(customer, metadata) {
  caller = customer || null;
  const box = $("customer");
  if (!customer) {
    const number = metadata.caller || metadata.from || metadata.ani || metadata.phone || "";
    fill(box,
      el("p", { class: "cust-name" }, "Unknown caller"),
      el("p", { class: "muted small" }, number ? number + " · not in the customer directory" : "Not in the customer directory"),
    );
    $("who").textContent = number ? "Unknown caller · " + number : "";
    return;
  }
  const tier = String(customer.tier || "").toLowerCase();
  const cases = customer.open_cases || [];
  const past = (customer.past_calls || []).slice(-3).reverse();
  const reason = customer.predicted_reason;
  const preferred = customer.preferred_name && customer.preferred_name !== customer.name
    ? customer.preferred_name : "";
  fill(box,
    el("p", { class: "cust-name" },
      el("span", { class: "name" }, customer.name || customer.preferred_name || customer.id),
      tier ? el("span", { class: "tier tier-" + tier.replace(/[^a-z]/g, "") }, tier) : null),
    el("p", { class: "muted small" },
      preferred ? ["goes by ", el("strong", { class: "preferred" }, preferred), " · "] : null,
      customer.id || "", customer.account_id ? " · acct " + customer.account_id : ""),
    reason ? el("div", { class: "reason" },
      el("span", { class: "small muted" }, "Likely calling about"),
      el("p", { class: "reason-label" }, reason.label || reason.intent),
      reason.case_id && cases.some((c) => c.id === reason.case_id)
        ? el("p", { class: "small muted" }, "from open case " + reason.case_id)
        : reason.because ? el("p", { class: "small muted" }, reason.because) : null) : null,
    cases.length ? el("div", { class: "cases" },
      el("h3", {}, "Open cases (" + cases.length + ")"),
      el("ul", {}, cases.map((c) => el("li", {},
        el("strong", {}, c.id), " ", c.summary || "",
        c.opened ? el("span", { class: "muted small" }, " · opened " + c.opened) : null)))) : null,
    past.length ? el("div", { class: "cases" },
      el("h3", {}, "Past calls"),
      el("ul", {}, past.map((c) => el("li", { class: "small" },
        el("span", { class: "muted" }, c.date || ""), " ", c.summary || c.intent || "")))) : null,
  );
  fill($("who"),
    el("strong", {}, customer.preferred_name || customer.name || ""),
    tier ? el("span", { class: "tier tier-" + tier.replace(/[^a-z]/g, "") }, tier) : null);
  document.title = (customer.name || callId) + " · callcue";
  if (!currentIntent) renderIntentPlaceholder();
}

let currentIntent = null;

function renderIntentPlaceholder() {
  const reason = caller && caller.predicted_reason;
  fill($("intent"),
    reason
      ? el("p", {}, el("span", { class: "muted small" }, "Predicted: "), el("strong", {}, reason.label || reason.intent))
      : el("p", { class: "muted" }, "Listening…"));
}

export function onIntent(event) {
  currentIntent = event;
  $("stage").textContent = event.stage || "";
  $("stage").dataset.stage = event.stage || "";
  const turn = event.intent
    ? event.label + " · " + Math.round((event.confidence || 0) * 100) + "%"
    : "not a known request";
  fill($("intent"),
    el("p", { class: "intent-label" + (event.current ? "" : " muted") }, event.current ? event.current_label || event.current : "Not clear yet"),
    el("p", { class: "small muted" }, "Last customer turn: " + turn),
  );
  updateGlance();
}

const customerTrend = [];
let lastCustomerSentiment = null;

function signed(x) {
  return (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(2);
}

export function onSentiment(event) {
  if (event.channel !== "customer") {
    const [cls, word] = mood(event.trend);
    fill($("sentiment-agent"), "Agent: ", el("span", { class: cls }, word), " (" + signed(event.trend) + ")");
    return;
  }
  lastCustomerSentiment = event;
  customerTrend.push(event.trend);
  const trend = Math.max(-1, Math.min(1, event.trend));
  const [cls, word] = mood(trend);
  const marker = $("gauge-marker");
  marker.hidden = false;
  marker.style.left = ((trend + 1) / 2 * 100).toFixed(1) + "%";
  marker.className = "gauge-marker " + cls;
  const gauge = $("gauge");
  gauge.setAttribute("aria-valuenow", trend.toFixed(2));
  gauge.setAttribute("aria-valuetext", word + " " + signed(trend));
  const value = $("sentiment-word");
  value.className = cls;
  value.textContent = word;
  $("sentiment-score").textContent = signed(trend) + " · last turn " + (event.label || "—") +
    (event.negative_streak >= 2 ? " · " + event.negative_streak + " negative in a row" : "");
  drawSpark();
  updateGlance();
}


function drawSpark() {
  const svg = $("spark");
  const n = customerTrend.length;
  const W = 200, H = 40;
  const y = (v) => (H / 2 - Math.max(-1, Math.min(1, v)) * (H / 2 - 3)).toFixed(1);
  const x = (i) => (n === 1 ? W : (i / (n - 1)) * W).toFixed(1);
  const points = customerTrend.map((v, i) => x(i) + "," + y(v)).join(" ");
  const [cls] = mood(customerTrend[n - 1]);
  svg.innerHTML =
    '<line class="spark-zero" x1="0" x2="200" y1="20" y2="20"></line>' +
    (n > 1 ? '<polyline class="spark-line ' + cls + '" points="' + points + '"></polyline>' : "") +
    '<circle class="spark-dot ' + cls + '" r="2.5" cx="' + x(n - 1) + '" cy="' + y(customerTrend[n - 1]) + '"></circle>';
}

function updateGlance() {
  const glance = $("glance");
  const parts = [];
  if (currentIntent && currentIntent.current) parts.push(el("span", { class: "g-intent" }, currentIntent.current_label || currentIntent.current));
  if (lastCustomerSentiment) {
    const [cls, word] = mood(lastCustomerSentiment.trend);
    parts.push(el("span", { class: "g-mood " + cls }, "● " + word));
  }
  fill(glance, ...parts);
}

const entities = new Map();

export function onEntities(event) {
  for (const entity of event.entities || []) {
    const key = entity.kind + ":" + (entity.value ?? entity.text);
    entities.delete(key);
    entities.set(key, entity);
  }
  const list = [...entities.values()].reverse().slice(0, 8);
  fill($("entities"), ...list.map((e) => el("li", { class: "chip", title: e.kind + ": " + (e.value ?? e.text) },
    el("span", { class: "muted" }, e.kind.replace(/_/g, " ")), " ", String(e.text ?? e.value))));
  $("entities-panel").hidden = list.length === 0;
}

