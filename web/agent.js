// Agent screen: /agent/{call_id}[?readonly=1]. One websocket (/v1/calls/{id}/events, followed
// with events.js: resumed after any drop); everything on screen is derived from the event stream.
import * as callcue from "./common.js";
import { followCall } from "./events.js";

(() => {
  const { el } = callcue;
  const $ = (id) => document.getElementById(id);
  // replaceChildren that skips null/false (which it would otherwise show as "null")
  const fill = (node, ...children) => node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));

  const callId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const params = new URLSearchParams(location.search);
  const readonly = ["1", "true", "yes"].includes((params.get("readonly") || "").toLowerCase());

  const TOP_ACTIONS = 2;
  const TOP_REPLIES = 3; // numbered 1–3, the rest under "Earlier suggestions"
  const MAX_ARTICLES = 3;
  const MAX_ALERTS = 3;
  const CHANNEL_NAMES = { customer: "Customer", agent: "Agent" };

  // ------------------------------------------------------------------ state
  const state = {
    started: false,
    ended: false,
    startedAt: null, // server time (ms) of call.started
    skew: null, // server clock − local clock (ms), from the freshest event
    duration: null,
    customer: null,
  };

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
    if (event.code === "bad_feedback") { // (events.js keeps the others: they say why it closed)
      clearPending();
      toast(event.message || "The server did not take that feedback.");
    }
  }

  function onStarted(event) {
    state.started = true;
    state.startedAt = Date.parse(event.ts) || null;
    state.customer = event.customer || null;
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

  // ------------------------------------------------------------------ transcript
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
        el("div", { class: "speaker" }, el("span", { class: "name" }, channelName(event.channel)), " ", el("span", { class: "at" }, callcue.clock(event.start))),
        text);
      line = { key, channel: event.channel, utterance: event.utterance, start: event.start, el: node, text, final: false };
      lines.set(key, line);
      place(line);
    } else if (line.start !== event.start) {
      line.start = event.start;
      line.el.querySelector(".at").textContent = callcue.clock(event.start);
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

  function onPartial(event) {
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

  function onFinal(event) {
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
  function onRevised(event) {
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
  function onRelabeled(event) {
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

  function clearPendingPartials() {
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

  function showPlaceholder(text, bad = false) {
    const p = $("transcript-empty");
    p.textContent = text;
    p.classList.toggle("bad", bad);
    p.hidden = false;
  }

  function updatePlaceholder() {
    const p = $("transcript-empty");
    if (lines.size) { p.hidden = true; return; }
    if (state.ended) showPlaceholder(state.started ? "The call ended; nothing was said." : "The call is over.");
    else if (state.started) showPlaceholder("Call started, listening…");
    else if (stream.open) showPlaceholder("Waiting for the call to start…");
  }

  // ------------------------------------------------------------------ customer, intent, sentiment
  function renderCustomer(customer, metadata) {
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
    const reason = state.customer && state.customer.predicted_reason;
    fill($("intent"),
      reason
        ? el("p", {}, el("span", { class: "muted small" }, "Predicted: "), el("strong", {}, reason.label || reason.intent))
        : el("p", { class: "muted" }, "Listening…"));
  }

  function onIntent(event) {
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

  function onSentiment(event) {
    if (event.channel !== "customer") {
      const [cls, word] = callcue.mood(event.trend);
      fill($("sentiment-agent"), "Agent: ", el("span", { class: cls }, word), " (" + signed(event.trend) + ")");
      return;
    }
    lastCustomerSentiment = event;
    customerTrend.push(event.trend);
    const trend = Math.max(-1, Math.min(1, event.trend));
    const [cls, word] = callcue.mood(trend);
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

  // call.wrapup: the predicted disposition and after-call note, to accept or edit
  function onWrapup(event) {
    const select = $("wrapup-disposition");
    const choices = event.choices && event.choices.length ? event.choices : [{ id: event.disposition, label: event.label }];
    fill(select, choices.map((c) => el("option", { value: c.id }, c.label)));
    select.value = event.disposition;
    $("wrapup-reason").textContent = "Suggested: " + event.label + (event.reason ? " (" + event.reason + ")" : "");
    $("wrapup-note").value = event.note || "";
    const editable = !readonly;
    select.disabled = $("wrapup-note").readOnly = !editable;
    $("wrapup-save").hidden = !editable;
    $("wrapup-panel").hidden = false;
  }

  $("wrapup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = $("wrapup-status");
    status.textContent = "Saving…";
    try {
      const saved = await callcue.api("/v1/calls/" + encodeURIComponent(callId) + "/wrapup", {
        method: "POST",
        body: { disposition: $("wrapup-disposition").value, note: $("wrapup-note").value },
      });
      status.textContent = "Saved: " + saved.label;
      $("wrapup-panel").dataset.saved = saved.disposition;
    } catch (error) {
      status.textContent = "Not saved: " + (error.message || error);
    }
  });

  // call.analytics: who talks how much, overtalk, silences (at most once a second)
  function onAnalytics(event) {
    const talk = event.talk_seconds || {};
    const total = Object.values(talk).reduce((a, b) => a + b, 0);
    $("talk-panel").hidden = false;
    const seconds = (v) => (v === null || v === undefined ? "—" : v.toFixed(1) + " s");
    const name = (channel) => (channel === "agent" ? "You" : channel.charAt(0).toUpperCase() + channel.slice(1));
    fill($("talk-bar"), Object.entries(talk).map(([channel, value]) => {
      const share = el("span", {
        class: "talk-share talk-" + (channel === "agent" ? "agent" : channel === "customer" ? "customer" : "other"),
        title: name(channel) + " " + seconds(value),
      });
      share.style.flexGrow = (total ? value / total : 0).toFixed(3);
      return share;
    }));
    $("talk-bar").setAttribute("aria-label", "Talk time: " + Object.entries(talk)
      .map(([c, v]) => name(c) + " " + (total ? Math.round(v / total * 100) : 0) + "%").join(", "));
    const rows = [];
    const row = (label, value, cls) => rows.push(el("dt", {}, label), el("dd", cls ? { class: cls } : {}, value));
    for (const [channel, value] of Object.entries(talk)) {
      row(name(channel), (total ? Math.round(value / total * 100) : 0) + "% · " + seconds(value));
    }
    row("Overtalk", seconds(event.overtalk_seconds), event.overtalk_seconds >= 5 ? "warn" : "");
    const interrupted = event.interruptions || {};
    if (interrupted.agent) row("You cut in", String(interrupted.agent), interrupted.agent >= 3 ? "warn" : "");
    row("Longest silence", seconds(event.longest_silence_seconds), event.longest_silence_seconds >= 20 ? "warn" : "");
    const wpm = (event.words_per_minute || {}).agent;
    if (wpm) row("Your pace", Math.round(wpm) + " wpm", wpm > 190 ? "warn" : "");
    const response = event.agent_response_seconds;
    if (response && response.count) row("Your answer time", "median " + seconds(response.p50));
    fill($("talk"), rows);
  }

  function drawSpark() {
    const svg = $("spark");
    const n = customerTrend.length;
    const W = 200, H = 40;
    const y = (v) => (H / 2 - Math.max(-1, Math.min(1, v)) * (H / 2 - 3)).toFixed(1);
    const x = (i) => (n === 1 ? W : (i / (n - 1)) * W).toFixed(1);
    const points = customerTrend.map((v, i) => x(i) + "," + y(v)).join(" ");
    const [cls] = callcue.mood(customerTrend[n - 1]);
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
      const [cls, word] = callcue.mood(lastCustomerSentiment.trend);
      parts.push(el("span", { class: "g-mood " + cls }, "● " + word));
    }
    fill(glance, ...parts);
  }

  const entities = new Map();

  function onEntities(event) {
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

  // ------------------------------------------------------------------ alerts
  function onAlert(event) {
    addAlert(event);
  }

  function addAlert(event) {
    const box = $("alerts");
    const severity = ["info", "warning", "critical"].includes(event.severity) ? event.severity : "warning";
    const node = el("div", { class: "alert sev-" + severity, "data-code": event.code || "" },
      el("span", { class: "alert-icon", "aria-hidden": "true" }, severity === "info" ? "i" : "!"),
      el("span", { class: "alert-text" }, event.message || event.code),
      el("button", { type: "button", class: "icon", "aria-label": "Hide this alert", onclick: () => node.remove() }, "✕"));
    box.prepend(node);
    while (box.children.length > MAX_ALERTS) box.lastElementChild.remove();
  }

  // ------------------------------------------------------------------ suggestions, articles, actions
  const cards = new Map(); // "kind:id" → card

  function cardKey(kind, id) { return kind + ":" + id; }

  function button(label, action, card, extra = {}) {
    return el("button", Object.assign({ type: "button", "data-feedback": action, onclick: () => act(card, action) }, extra), label);
  }

  function onSuggestion(event) {
    const kind = event.kind === "article" ? "article" : "reply";
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
    if (kind === "reply") renderReplies(); else renderArticles();
  }

  function onAction(event) {
    const key = cardKey("action", event.id);
    let card = cards.get(key);
    if (card && card.state === "dismissed") return;
    if (!card) {
      card = { kind: "action", id: event.id, state: "", el: null };
      cards.set(key, card);
    }
    card.seq = event.seq || 0;
    card.event = event;
    buildCard(card);
    card.el.classList.add("fresh");
    setTimeout(() => card.el && card.el.classList.remove("fresh"), 1600);
    renderActions();
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

  function renderReplies() {
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
  function renderActions() {
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
    if (!stream.send({ type: "feedback", kind: card.kind, id: card.id, action })) {
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
  function clearPending() {
    for (const card of cards.values()) {
      if (card.pending) {
        card.pending = null;
        clearTimeout(card.pendingTimer);
        paintState(card);
      }
    }
  }

  function onFeedback(event) {
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

  // ------------------------------------------------------------------ checklist
  function onChecklist(event) {
    const items = event.items || [];
    const changed = new Set(event.changed || []);
    const closing = event.stage === "closing";
    const done = items.filter((i) => i.done).length;
    $("checklist-count").textContent = items.length ? done + "/" + items.length : "";
    fill($("checklist"), ...items.map((item) => {
      let cls = item.done ? "done" : "todo";
      if (!item.done && (event.final || (item.due === "opening" && event.stage !== "opening") || (item.due === "before_closing" && closing))) cls += " late";
      if (changed.has(item.id)) cls += " just";
      const due = item.due === "before_closing" ? "before closing" : item.due === "any" ? "" : item.due;
      return el("li", { class: "check " + cls, "data-id": item.id, "data-done": item.done ? "true" : "false" },
        el("span", { class: "tick", "aria-hidden": "true" }, item.done ? "✓" : ""),
        el("span", { class: "check-label" }, item.label),
        el("span", { class: "sr-only" }, item.done ? " — done" : " — not yet"),
        due && !item.done ? el("span", { class: "due" }, due) : null);
    }));
    $("checklist-panel").dataset.final = event.final ? "true" : "false";
  }

  // ------------------------------------------------------------------ clock, toast, keys
  function updateClock() {
    const clock = $("clock");
    let seconds = null;
    if (state.ended && typeof state.duration === "number") seconds = state.duration;
    else if (state.started && state.startedAt && !state.ended) seconds = (Date.now() + (state.skew || 0) - state.startedAt) / 1000;
    clock.textContent = seconds === null ? "" : callcue.clock(seconds);
  }
  setInterval(() => { if (state.started && !state.ended) updateClock(); }, 1000);
  let clockQueued = false;
  function clockSoon() {
    if (clockQueued) return;
    clockQueued = true;
    requestAnimationFrame(() => { clockQueued = false; updateClock(); });
  }

  let toastTimer = null;
  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 3500);
  }

  document.addEventListener("keydown", (e) => {
    if (readonly || state.ended || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (/^[1-3]$/.test(e.key)) {
      const card = numbered[Number(e.key) - 1];
      if (card) { e.preventDefault(); act(card, "accepted"); }
    }
  });

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
})();
