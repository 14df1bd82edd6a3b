// QA call page: transcript (click a line: select it for a comment, play it), sentiment timeline,
// summary, checklist, actions and suggestions with what the agent did with them, recordings
// synced to the transcript, exports, and the review form with the reviews so far.
import { api, link, el, clock } from "./common.js";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const callId = decodeURIComponent(location.pathname.replace(/^\/qa\//, "").replace(/\/+$/, ""));
  const base = "/v1/calls/" + encodeURIComponent(callId);

  const state = {
    call: null, summary: null, utterances: [], lines: new Map(), // "channel:n" → {u, li}
    players: new Map(), // channel → <audio>
    lead: null, selected: null, pending: [], playing: new Set(), followPausedUntil: 0,
    checklistLabels: {}, chartX: null, reviews: [],
  };

  for (const a of document.querySelectorAll("a[data-href]")) a.href = link(a.dataset.href);
  const lastSearch = sessionStorage.getItem("callcue.qa.search");
  if (lastSearch !== null) $("back-to-search").href = link("/qa" + lastSearch);

  // ------------------------------------------------------------------ helpers
  const key = (channel, n) => channel + ":" + n;
  const speaker = (channel) => channel ? channel[0].toUpperCase() + channel.slice(1) : "—";
  const words = (id) => String(id ?? "").replaceAll("_", " ");
  const signed = (v) => (v === null || v === undefined) ? "—" : (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toFixed(2);
  const labelClass = (label) => label === "negative" ? "mood-neg" : label === "positive" ? "mood-pos" : "mood-neu";
  const trendLabel = (v) => v === null || v === undefined ? null : v < -0.2 ? "negative" : v > 0.2 ? "positive" : "neutral";
  const when = (iso) => iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "—";
  const short = (text, n = 60) => text.length > n ? text.slice(0, n - 1) + "…" : text;

  function problem(error) {
    if (error.status === 401) return ["Sign-in needed (401)", error.message + " Open this page with ?token=YOUR_TOKEN."];
    if (error.status === 403) return ["Not allowed (403)", error.message];
    if (error.status === 404) return ["Call not found (404)", error.message];
    if (error.status) return ["The server answered " + error.status, error.message];
    return ["Cannot reach the callcue server", String(error.message || error)];
  }

  function fatal(error) {
    const [title, text] = problem(error);
    $("error").replaceChildren(el("strong", {}, title), text, " ", el("a", { href: $("back-to-search").href }, "Back to search"));
    $("error").hidden = false;
    $("content").hidden = true;
    $("status").hidden = true;
    document.title = title + " · callcue";
  }

  function jumpButton(channel, n, text) {
    const line = state.lines.get(key(channel, n));
    if (!line) return null;
    return el("button", { type: "button", class: "linkish", onclick: () => select(line, { play: true, scroll: true }) },
      text || `${speaker(channel)} ${clock(line.u.start)}`);
  }

  // ------------------------------------------------------------------ load
  async function load() {
    let call, transcript, summary;
    try {
      [call, transcript, summary] = await Promise.all([
        api(base), api(base + "/transcript?format=json"), api(base + "/summary"),
      ]);
    } catch (error) {
      fatal(error);
      return;
    }
    let events = [];
    try { events = (await api(base + "/events?types=intent,sentiment,alert")).events || []; } catch (_) { /* optional */ }
    let analytics = null;
    try { analytics = await api(base + "/analytics"); } catch (_) { /* optional: an older server */ }
    let scorecard = null;
    try { scorecard = await api(base + "/scorecard"); } catch (_) { /* none: no scorecard, or not ended */ }
    state.call = call;
    state.summary = summary;
    state.utterances = transcript.utterances || [];
    state.reviews = call.reviews || [];
    for (const item of (summary.checklist && summary.checklist.items) || []) state.checklistLabels[item.id] = item.label;
    document.title = `Call ${call.id} · callcue QA`;

    renderHead(call, summary);
    renderTranscript(state.utterances, summary, events);
    renderPlayers(call.recordings || []);
    renderTimeline(analytics);
    renderAutoScore(scorecard);
    renderChart();
    renderSummary(summary, events);
    renderChecklist(summary.checklist);
    renderActions(summary.actions || []);
    renderSuggestions(summary.suggestions || []);
    renderScorecard(summary.checklist);
    renderTarget();
    renderReviews();
    $("status").hidden = true;
    $("content").hidden = false;
    renderChart(); // again, now that the panel has its real width
  }

  // ------------------------------------------------------------------ head
  function renderHead(call, summary) {
    $("call-title").textContent = "Call " + call.id;
    const live = call.outcome === "in_progress";
    $("outcome").replaceChildren(el("span", { class: "pill " + (live ? "" : "quiet") }, live ? "live" : words(call.outcome)));
    const list = call.checklist || {};
    const fact = (label, ...value) => [el("div", {}, el("dt", {}, label), el("dd", {}, ...value))];
    const sentiment = call.sentiment_label;
    $("facts").replaceChildren(
      ...fact("Started", when(call.started_at)),
      ...fact("Duration", clock(call.duration)),
      ...fact("Agent", call.agent || el("span", { class: "muted" }, "—")),
      ...fact("Customer", call.customer_name || el("span", { class: "muted" }, "Unknown"),
        call.customer_id ? el("span", { class: "muted small" }, " · " + call.customer_id) : null),
      ...fact("Reason", summary.reason ? summary.reason.label || words(summary.reason.intent) : el("span", { class: "muted" }, "—")),
      ...fact("Sentiment at end", sentiment ? el("span", { class: labelClass(sentiment) }, sentiment) : el("span", { class: "muted" }, "—")),
      ...fact("Alerts", call.alerts > 0 ? el("span", { class: "pill alert" }, call.alerts) : "none"),
      ...fact("Checklist", list.total ? `${list.done} of ${list.total}` : "—"),
      ...fact("Source", el("span", { title: "channels: " + (call.channels || []).join(", ") }, call.source)),
    );
    const formats = [["json", "JSON"], ["txt", "Text"], ["vtt", "WebVTT"], ["srt", "SRT"], ["csv", "CSV"]];
    $("exports").replaceChildren(
      el("span", { class: "small muted" }, "Transcript:"),
      ...formats.map(([fmt, name]) => el("a", {
        class: "button", href: link(`${base}/transcript?format=${fmt}`), download: `${call.id}.${fmt}`,
        "data-format": fmt, title: `Download the transcript as ${name}`,
      }, name)),
      ...(call.recordings || []).map((ch) => el("a", {
        class: "button", href: link(`${base}/audio/${encodeURIComponent(ch)}`), download: `${call.id}-${ch}.wav`,
        title: `Download the ${ch} recording (WAV)`,
      }, speaker(ch) + " audio")),
    );
    if (live) {
      $("live-note").replaceChildren("This call is still live: this page shows what has been stored so far. ",
        el("a", { href: link("/agent/" + encodeURIComponent(call.id) + "?readonly=1") }, "Watch it live"), " · ",
        el("a", { href: "#", onclick: (e) => { e.preventDefault(); location.reload(); } }, "Reload"));
      $("live-note").hidden = false;
    }
  }

  // ------------------------------------------------------------------ transcript
  function renderTranscript(utterances, summary, events) {
    const arc = new Map(summary.sentiment.arc.map((a) => [a.utterance, a]));
    const intents = new Map();
    const alerts = new Map();
    let lastCustomer = null;
    for (const e of events) {
      if (e.type === "intent" && e.intent) intents.set(e.utterance, e);
      if (e.type === "sentiment" && e.channel === "customer") lastCustomer = e.utterance;
      if (e.type === "alert" && lastCustomer !== null) {
        if (!alerts.has(lastCustomer)) alerts.set(lastCustomer, []);
        alerts.get(lastCustomer).push(e);
      }
    }
    state.alertUtterances = alerts;
    const ticks = new Map();
    for (const item of (summary.checklist && summary.checklist.items) || []) {
      if (item.done && item.utterance !== null && item.utterance !== undefined) {
        const k = key("agent", item.utterance);
        if (!ticks.has(k)) ticks.set(k, []);
        ticks.get(k).push(item.label);
      }
    }
    let shownIntent = null;
    const items = utterances.map((u) => {
      const tags = el("span", { class: "tags" });
      if (u.channel === "customer") {
        const s = arc.get(u.utterance);
        const intent = intents.get(u.utterance);
        if (intent && intent.intent !== shownIntent) {
          tags.append(el("span", { class: "pill", title: `intent ${intent.intent} (${Math.round(intent.confidence * 100)}%)` }, intent.label || words(intent.intent)));
          shownIntent = intent.intent;
        }
        for (const a of alerts.get(u.utterance) || []) tags.append(el("span", { class: "pill alert", title: a.message }, "alert"));
        if (s) tags.prepend(el("span", { class: "dot " + labelClass(s.label), title: `${s.label} ${signed(s.score)}`, "aria-label": `sentiment ${s.label}` }));
      }
      for (const label of ticks.get(key(u.channel, u.utterance)) || []) {
        tags.append(el("span", { class: "pill ok", title: "checklist item covered here" }, "✓ " + label));
      }
      const li = el("li", {
        tabindex: "0", "data-channel": u.channel, "data-utterance": u.utterance,
        "data-start": u.start, "data-end": u.end, id: `u-${u.channel}-${u.utterance}`,
        title: "Click: comment on this line" + (state.call.recordings?.length ? " and play it" : ""),
      },
      el("span", { class: "t" }, clock(u.start)),
      el("span", { class: "who " + u.channel }, speaker(u.channel)),
      el("span", { class: "text" }, el("span", { class: "said" }, u.text),
        u.live_text ? el("span", { class: "revised", title: `Revised by the accurate model after the call; heard live as: “${u.live_text}”` }, "revised") : null,
        tags, el("span", { class: "notes" })));
      const line = { u, li };
      state.lines.set(key(u.channel, u.utterance), line);
      li.addEventListener("click", () => select(line, { play: true }));
      li.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(line, { play: true }); }
      });
      return li;
    });
    $("lines").replaceChildren(...items);
    $("transcript-hint").textContent = utterances.length
      ? `${utterances.length} lines · click a line to comment on it${(state.call.recordings || []).length ? " and hear it" : ""}`
      : "";
    if (!utterances.length) $("lines").replaceChildren(el("li", { class: "empty", style: "display:block;cursor:default" }, "No speech was transcribed in this call."));
    const body = $("transcript-body");
    for (const type of ["wheel", "touchmove"]) body.addEventListener(type, () => { state.followPausedUntil = performance.now() + 4000; }, { passive: true });
  }

  function select(line, { play = false, scroll = false } = {}) {
    if (state.selected) state.selected.li.classList.remove("selected");
    state.selected = line;
    line.li.classList.add("selected");
    line.li.setAttribute("aria-current", "true");
    renderTarget();
    if (scroll) ensureVisible(line.li, true);
    if (play) seek(line.u.channel, line.u.start, true);
  }

  function ensureVisible(li, center = false) {
    const box = $("transcript-body");
    const b = box.getBoundingClientRect();
    const r = li.getBoundingClientRect();
    if (r.top >= b.top && r.bottom <= b.bottom) return;
    const offset = r.top - b.top + box.scrollTop;
    box.scrollTop = center ? offset - box.clientHeight / 2 + r.height / 2 : (r.top < b.top ? offset - 8 : offset - box.clientHeight + r.height + 8);
  }

  // ------------------------------------------------------------------ audio
  function renderPlayers(channels) {
    if (!channels.length) return;
    const rows = channels.map((ch) => {
      const audio = el("audio", {
        controls: true, preload: "metadata", src: link(`${base}/audio/${encodeURIComponent(ch)}`),
        "data-channel": ch, "aria-label": `${speaker(ch)} channel recording`,
      });
      state.players.set(ch, audio);
      // events caused by keeping channels together are echoes: they do not lead
      const echo = (what) => { if (audio["_echo_" + what]) { audio["_echo_" + what] = false; return true; } return false; };
      audio.addEventListener("play", () => { if (!echo("play")) follow(ch, "play"); startSync(); });
      audio.addEventListener("pause", () => { if (!echo("pause")) follow(ch, "pause"); paintPlaying(); });
      audio.addEventListener("seeked", () => { if (!echo("seek")) follow(ch, "seek"); paintPlaying(); });
      audio.addEventListener("ended", () => paintPlaying());
      audio.addEventListener("error", () => {
        const row = audio.closest(".player");
        if (row && !row.querySelector(".status")) row.append(el("span", { class: "status bad", style: "grid-column:2" }, "This recording could not be loaded."));
      });
      return el("div", { class: "player" }, el("span", { class: "who " + ch }, speaker(ch)), audio);
    });
    $("players").replaceChildren(...rows);
    $("players-panel").hidden = false;
    $("linked").closest("label").hidden = channels.length < 2;
  }

  const linked = () => $("linked").checked && state.players.size > 1;

  // Keep the other channels with the one the user acted on (when "play together" is on).
  function follow(channel, what) {
    state.lead = channel;
    if (!linked()) return;
    const leader = state.players.get(channel);
    for (const [ch, audio] of state.players) {
      if (ch === channel) continue;
      if (what !== "pause") align(audio, leader.currentTime);
      if (what === "play" && audio.paused) { audio._echo_play = true; audio.play().catch(() => { audio._echo_play = false; }); }
      if (what === "pause" && !audio.paused) { audio._echo_pause = true; audio.pause(); }
    }
  }

  function align(audio, seconds) {
    if (Math.abs(audio.currentTime - seconds) <= 0.25) return;
    audio._echo_seek = true;
    audio.currentTime = seconds;
  }

  // ------------------------------------------------------------------ timeline (call analytics)
  // One row per channel (its talk), one below it for overtalk (red) and silences (hatched);
  // a click plays the recording from there.
  function renderTimeline(analytics) {
    if (!analytics || !analytics.timeline) return;
    const { talk, overtalk, silences } = analytics.timeline;
    const channels = Object.keys(talk);
    const duration = Math.max(analytics.duration_seconds || 0, 1);
    const W = 1000, LABEL = 120, ROW = 16, GAP = 6;
    const H = (channels.length + 1) * (ROW + GAP) + 14;
    const X = (t) => (LABEL + (t / duration) * (W - LABEL - 4)).toFixed(1);
    const width = (s, e) => Math.max(0.8, ((e - s) / duration) * (W - LABEL - 4)).toFixed(1);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "timeline",
      "aria-label": "Who spoke when: " + channels.map((c) => speaker(c) + " " + (analytics.talk_seconds[c] || 0).toFixed(0) + " s").join(", ") +
        `, overtalk ${analytics.overtalk_seconds.toFixed(1)} s, silence ${analytics.silence_seconds.toFixed(1)} s` });
    const rows = [...channels, "gaps"];
    rows.forEach((row, i) => {
      const y = i * (ROW + GAP);
      root.append(svg("text", { x: 0, y: y + ROW - 4, class: "timeline-label" }, row === "gaps" ? "overtalk · silence" : speaker(row)));
      root.append(svg("rect", { x: LABEL, y, width: W - LABEL - 4, height: ROW, class: "timeline-track" }));
      const spans = row === "gaps"
        ? [...silences.map((s) => [...s, "silence"]), ...overtalk.map((s) => [...s, "overtalk"])]
        : talk[row].map((s) => [...s, "talk-" + (row === "agent" || row === "customer" ? row : "other")]);
      for (const [start, end, kind] of spans) {
        const rect = svg("rect", { x: X(start), y, width: width(start, end), height: ROW, class: "tl-" + kind, "data-start": start },
          svg("title", {}, `${kind.replace("talk-", "")} ${clock(start)}–${clock(end)} (${(end - start).toFixed(1)} s)`));
        rect.addEventListener("click", () => seek(row === "gaps" ? channels[0] : row, start, true));
        root.append(rect);
      }
    });
    for (let t = 0; t <= duration * 0.95; t += duration > 600 ? 120 : duration > 120 ? 30 : 10) {
      root.append(svg("text", { x: X(t), y: H - 2, class: "timeline-tick" }, clock(t)));
    }
    root.append(svg("text", { x: X(duration), y: H - 2, class: "timeline-tick", "text-anchor": "end" }, clock(duration)));
    $("timeline").replaceChildren(root);
    $("timeline-legend").replaceChildren(
      ...channels.map((c) => el("span", {}, el("i", { class: "tl-" + (c === "agent" || c === "customer" ? "talk-" + c : "talk-other") }), speaker(c))),
      el("span", {}, el("i", { class: "tl-overtalk" }), "overtalk"),
      el("span", {}, el("i", { class: "tl-silence" }), "silence ≥ 1 s"));
    const fact = (label, value) => el("div", {}, el("dt", {}, label), el("dd", {}, value));
    const total = Object.values(analytics.talk_seconds).reduce((a, b) => a + b, 0);
    const seconds = (v) => (v === null || v === undefined ? "—" : v.toFixed(1) + " s");
    const response = analytics.agent_response_seconds;
    $("talk-facts").replaceChildren(
      ...channels.map((c) => fact(speaker(c) + " talk", `${total ? Math.round(analytics.talk_seconds[c] / total * 100) : 0}% · ${seconds(analytics.talk_seconds[c])}`)),
      fact("Silence", `${seconds(analytics.silence_seconds)} (longest ${seconds(analytics.longest_silence_seconds)})`),
      fact("Overtalk", seconds(analytics.overtalk_seconds)),
      fact("Interruptions", channels.map((c) => `${speaker(c)} ${analytics.interruptions[c] || 0}`).join(", ")),
      fact("Pace", channels.map((c) => `${speaker(c)} ${analytics.words_per_minute[c] ? Math.round(analytics.words_per_minute[c]) : "—"} wpm`).join(", ")),
      ...(response && response.count ? [fact("Agent answer time", `median ${seconds(response.p50)}, max ${seconds(response.max)}`)] : []),
    );
    const matched = analytics.categories || [];
    $("categories").replaceChildren(...matched.map((m) => el("li", { "data-category": m.name },
      (m.utterance !== null && m.utterance !== undefined && jumpButton(m.channel, m.utterance, clock(m.start))) ||
        el("button", { type: "button", class: "linkish", title: "Play from here",
          onclick: () => seek(m.channel && talk[m.channel] ? m.channel : channels[0], m.start, true) },
        clock(m.start)), " ",
      el("span", { class: "pill category" }, m.label || words(m.name)),
      m.channel ? el("span", { class: "muted small" }, " " + speaker(m.channel)) : null,
      m.text ? el("span", { class: "small" }, " “" + m.text + "”") : null,
      m.absent ? el("span", { class: "muted small" }, " (not said)") : null)));
    $("categories-wrap").hidden = matched.length === 0;
    $("timeline-panel").hidden = false;
  }

  // ------------------------------------------------------------------ automatic scorecard
  // Each item's automatic answer and why; a reviewer may override it (kept beside it).
  function renderAutoScore(card) {
    if (!card || !card.items || !card.items.length) return; // not scored
    const mark = (passed) => passed === null || passed === undefined
      ? el("span", { class: "muted", title: "not answerable on this call" }, "–")
      : el("span", { class: passed ? "mood-pos" : "mood-neg" }, passed ? "✓" : "✗");
    $("auto-score").textContent = card.score === null ? "—" : card.score.toFixed(0) + " / 100";
    $("auto-score-note").textContent = card.score !== card.automatic_score
      ? `Automatic score ${card.automatic_score === null ? "—" : card.automatic_score.toFixed(0)}; with reviewers' overrides ${card.score === null ? "—" : card.score.toFixed(0)}.`
      : "Answered automatically when the call ended. Click ✓/✗ to override an item.";
    $("auto-scorecard").tBodies[0].replaceChildren(...card.items.map((item) => {
      const override = item.override;
      const flip = el("button", { type: "button", class: "linkish override", "data-item": item.id,
        title: "Override: mark it " + (item.final ? "failed" : "passed") },
      item.final ? "mark failed" : "mark passed");
      flip.addEventListener("click", () => overrideItem(item, !item.final));
      return el("tr", { "data-item": item.id, "data-final": String(item.final) },
        el("td", {}, mark(item.passed)),
        el("td", {}, item.label, el("div", { class: "small muted" }, item.reason),
          override ? el("div", { class: "small" }, "Override by " + override.reviewer + ": ", mark(override.passed),
            override.note ? " “" + override.note + "”" : "") : null),
        el("td", { class: "right small muted" }, "×" + item.weight),
        el("td", { class: "right" }, flip));
    }));
    $("auto-score-panel").hidden = false;
  }

  async function overrideItem(item, passed) {
    const note = window.prompt(`Why is “${item.label}” ${passed ? "passed" : "failed"}? (optional)`, "");
    if (note === null) return;
    const reviewer = (document.querySelector("#review-form [name=reviewer]") || {}).value || "";
    try {
      const card = await api(base + "/scorecard", { method: "POST",
        body: { item: item.id, passed, note, ...(reviewer ? { reviewer } : {}) } });
      renderAutoScore(card);
      $("auto-score-status").textContent = "Override saved.";
    } catch (error) {
      $("auto-score-status").textContent = error.status === 403
        ? "Overrides need the qa, supervisor or admin role." : String(error.message || error);
    }
  }

  // A transcript line was clicked: play its channel from the line's start.
  function seek(channel, seconds, play) {
    // a diarized (mono) call has one recording, "mixed", for both parties' lines
    if (!state.players.has(channel) && state.players.size === 1) channel = [...state.players.keys()][0];
    const audio = state.players.get(channel);
    if (!audio) return;
    state.lead = channel;
    audio.currentTime = Math.max(0, seconds);
    if (linked()) for (const [ch, other] of state.players) if (ch !== channel) align(other, Math.max(0, seconds));
    if (play) audio.play().catch(() => {});
    paintPlaying();
  }

  let syncing = false;
  function startSync() {
    if (syncing) return;
    syncing = true;
    const step = () => {
      const lead = state.players.get(state.lead);
      if (lead && !lead.paused && linked()) for (const other of state.players.values()) if (other !== lead && !other.paused) align(other, lead.currentTime);
      paintPlaying();
      const any = [...state.players.values()].some((a) => !a.paused && !a.ended);
      if (any) requestAnimationFrame(step); else syncing = false;
    };
    requestAnimationFrame(step);
  }

  // Highlight the line(s) being heard; keep them in view unless the user is scrolling.
  function paintPlaying() {
    const lead = state.players.get(state.lead);
    if (!lead) return;
    const t = lead.currentTime;
    const active = lead.paused && t === 0 ? [] : [...state.lines.values()].filter((line) =>
      (linked() || line.u.channel === state.lead) && line.u.start <= t && t < line.u.end + 0.2);
    const now = new Set(active.map((l) => l.li));
    for (const li of state.playing) if (!now.has(li)) li.classList.remove("playing");
    let fresh = null;
    for (const li of now) if (!state.playing.has(li)) { li.classList.add("playing"); fresh = fresh || li; }
    state.playing = now;
    if (fresh && !lead.paused && performance.now() > state.followPausedUntil) ensureVisible(fresh);
    const head = document.getElementById("playhead");
    if (head && state.chartX) {
      const x = state.chartX(t);
      head.setAttribute("x1", x); head.setAttribute("x2", x);
      head.style.display = lead.paused && t === 0 ? "none" : "";
    }
  }

  // ------------------------------------------------------------------ sentiment chart
  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function renderChart() {
    const summary = state.summary;
    if (!summary) return;
    const arc = summary.sentiment.arc || [];
    const s = summary.sentiment;
    $("sentiment-stats").textContent = arc.length
      ? `Start ${signed(s.start)} · End ${signed(s.end)} · Lowest ${signed(s.lowest)} (rolling trend, −1 to +1)`
      : "";
    const box = $("chart");
    if (!arc.length) {
      box.replaceChildren(el("p", { class: "muted" }, "No customer sentiment was recorded for this call."));
      return;
    }
    const W = Math.max(320, Math.round(box.clientWidth || 460)), H = 180;
    const pad = { l: 30, r: 10, t: 10, b: 22 };
    const customer = new Map(state.utterances.filter((u) => u.channel === "customer").map((u) => [u.utterance, u]));
    const lastEnd = state.utterances.reduce((m, u) => Math.max(m, u.end), 0);
    const span = Math.max(state.call.duration || 0, lastEnd, 1);
    const X = (t) => pad.l + (Math.min(Math.max(t, 0), span) / span) * (W - pad.l - pad.r);
    const Y = (v) => pad.t + (1 - (Math.max(-1, Math.min(1, v)) + 1) / 2) * (H - pad.t - pad.b);
    state.chartX = X;
    const points = arc.map((a, i) => {
      const u = customer.get(a.utterance);
      const t = u ? u.start : (i + 0.5) * span / arc.length;
      return { a, u, t, x: X(t) };
    });
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": `Customer sentiment over the call: starts ${signed(s.start)}, ends ${signed(s.end)}, lowest ${signed(s.lowest)}` });
    // bands where the trend reads positive / negative (same thresholds as the stored label)
    root.append(
      svg("rect", { x: pad.l, y: Y(1), width: W - pad.l - pad.r, height: Y(0.2) - Y(1), fill: "#1f8a4c", "fill-opacity": ".06" }),
      svg("rect", { x: pad.l, y: Y(-0.2), width: W - pad.l - pad.r, height: Y(-1) - Y(-0.2), fill: "#c2352b", "fill-opacity": ".06" }),
    );
    for (const v of [1, 0.5, 0, -0.5, -1]) {
      root.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: Y(v), y2: Y(v), stroke: v === 0 ? "#b8c0cb" : "#e6e9ee", "stroke-width": 1 }));
      if (v !== 0.5 && v !== -0.5) root.append(svg("text", { x: pad.l - 6, y: Y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5f6b7a" }, document.createTextNode(v > 0 ? "+1" : v < 0 ? "−1" : "0")));
    }
    const stepS = [15, 30, 60, 120, 300, 600, 1200].find((t) => span / t <= 6) || 1800;
    for (let t = 0; t <= span + 0.01; t += stepS) {
      const anchor = t === 0 ? "start" : X(t) > W - pad.r - 14 ? "end" : "middle";
      root.append(svg("text", { x: X(t), y: H - 6, "text-anchor": anchor, "font-size": 11, fill: "#5f6b7a" }, document.createTextNode(clock(t))));
    }
    // alerts: a red mark at the customer line they were raised after
    for (const p of points) {
      const raised = (state.alertUtterances && state.alertUtterances.get(p.a.utterance)) || [];
      if (!raised.length) continue;
      const mark = svg("g", { class: "alert-mark" },
        svg("line", { x1: p.x, x2: p.x, y1: pad.t, y2: H - pad.b, stroke: "#c2352b", "stroke-dasharray": "3 3", "stroke-width": 1 }),
        svg("path", { d: `M${p.x - 5},${pad.t} L${p.x + 5},${pad.t} L${p.x},${pad.t + 7} Z`, fill: "#c2352b" }),
        svg("title", {}, document.createTextNode("Alert: " + raised.map((r) => r.message).join("; "))));
      root.append(mark);
    }
    // per-line scores (faint) and the rolling trend (line)
    const colors = { negative: "#c2352b", positive: "#1f8a4c", neutral: "#8a95a5" };
    for (const p of points) {
      const dot = svg("circle", { cx: p.x, cy: Y(p.a.score), r: 3.5, fill: colors[p.a.label] || "#8a95a5", "fill-opacity": ".55", class: "score-dot", style: "cursor:pointer" },
        svg("title", {}, document.createTextNode(`${clock(p.t)} · ${p.a.label} ${signed(p.a.score)} (trend ${signed(p.a.trend)})${p.u ? "\n“" + short(p.u.text, 90) + "”" : ""}`)));
      dot.addEventListener("click", () => { const line = state.lines.get(key("customer", p.a.utterance)); if (line) select(line, { play: true, scroll: true }); });
      root.append(dot);
    }
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${Y(p.a.trend).toFixed(1)}`).join(" ");
    root.append(svg("path", { d: points.length === 1 ? d + ` L${(points[0].x + 0.1).toFixed(1)},${Y(points[0].a.trend).toFixed(1)}` : d,
      fill: "none", stroke: "#2457d6", "stroke-width": 2.2, "stroke-linejoin": "round", "stroke-linecap": "round", class: "trend" }));
    root.append(svg("line", { id: "playhead", x1: -10, x2: -10, y1: pad.t, y2: H - pad.b, stroke: "#e0a800", "stroke-width": 2, style: "display:none" }));
    box.replaceChildren(root, el("div", { class: "legend" },
      el("span", {}, el("i", { style: "background:#2457d6" }), "rolling trend"),
      el("span", {}, el("i", { style: "background:#8a95a5;height:7px;width:7px;border-radius:50%" }), "each customer line"),
      el("span", {}, el("i", { style: "background:#c2352b" }), "alert")));
    paintPlaying();
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(renderChart, 150); });

  // ------------------------------------------------------------------ summary
  function renderSummary(summary, events) {
    const out = [];
    out.push(el("h3", {}, "Reason for the call"));
    if (summary.reason) {
      const r = summary.reason;
      out.push(el("div", { class: "item-line" },
        el("span", { class: "grow" }, el("strong", {}, r.label || words(r.intent)), " ", el("span", { class: "muted small" }, "(" + r.source + ")")),
        r.said_at !== undefined && r.said_at !== null ? jumpButton("customer", r.said_at) : null));
    } else {
      out.push(el("p", { class: "muted" }, "Not recognised."));
    }
    out.push(el("h3", {}, "Intents"));
    out.push(summary.intents.length
      ? el("div", { class: "intents" }, summary.intents.map((i) => el("span", { class: "pill", title: i.intent },
        (i.label || words(i.intent)) + (i.utterances > 1 ? ` ×${i.utterances}` : ""))))
      : el("p", { class: "muted" }, "No intent was recognised."));
    const kinds = Object.entries(summary.entities || {});
    if (kinds.length) {
      out.push(el("h3", {}, "Key details"));
      out.push(el("ul", { class: "plain" }, kinds.map(([kind, values]) =>
        el("li", { class: "item-line" }, el("span", { class: "muted small", style: "min-width:90px" }, words(kind)), el("span", { class: "grow" }, values.join(", "))))));
    }
    out.push(el("h3", {}, "Alerts"));
    const alerts = events.filter((e) => e.type === "alert");
    const attributed = new Map();
    for (const [n, list] of state.alertUtterances || []) for (const a of list) attributed.set(a.seq, n);
    out.push(alerts.length || summary.alerts.length
      ? el("ul", { class: "plain" }, (alerts.length ? alerts : summary.alerts).map((a) => el("li", { class: "item-line" },
        el("span", { class: "pill alert" }, words(a.code)),
        el("span", { class: "grow" }, a.message),
        attributed.has(a.seq) ? jumpButton("customer", attributed.get(a.seq)) : null)))
      : el("p", { class: "muted" }, "No alerts were raised."));
    $("summary").replaceChildren(...out);
  }

  function renderChecklist(checklist) {
    if (!checklist) { $("checklist").replaceChildren(el("p", { class: "muted" }, "No checklist was run for this call.")); return; }
    const n = checklist.items.length, done = checklist.done.length;
    $("checklist").replaceChildren(
      el("div", { class: "row", style: "margin-bottom:4px" },
        el("strong", {}, `${done} of ${n} done`),
        el("span", { class: "pill " + (checklist.complete ? "ok" : "warn") }, checklist.complete ? "complete" : "incomplete")),
      el("ul", { class: "plain" }, checklist.items.map((item) => el("li", { class: "check " + (item.done ? "done" : "missed") },
        el("span", { class: "mark", "aria-label": item.done ? "done" : "missed" }, item.done ? "✓" : "✗"),
        el("span", {}, item.label, " ", el("span", { class: "muted small" }, "· " + words(item.due))),
        item.done && item.utterance !== null && item.utterance !== undefined
          ? jumpButton("agent", item.utterance) || el("span", { class: "muted small" }, item.at ? clock(item.at) : "")
          : el("span", {})))));
  }

  const STATUS = { taken: ["ok", "used"], dismissed: ["warn", "dismissed"], shown: ["quiet", "shown"] };
  const RANK = { taken: 2, dismissed: 1, shown: 0 };

  function dedupe(list, id) {
    const seen = new Map();
    for (const x of list) {
      const k = id(x), prev = seen.get(k);
      if (!prev) seen.set(k, Object.assign({ times: 1 }, x));
      else { prev.times += 1; if (RANK[x.status] > RANK[prev.status]) prev.status = x.status; }
    }
    return [...seen.values()];
  }

  function counts(list) {
    const used = list.filter((x) => x.status === "taken").length, dismissed = list.filter((x) => x.status === "dismissed").length;
    return `${list.length} shown · ${used} used · ${dismissed} dismissed`;
  }

  function renderActions(actions) {
    const list = dedupe(actions, (a) => a.id);
    $("actions").replaceChildren(list.length
      ? el("div", {}, el("div", { class: "small muted", style: "margin-bottom:4px" }, counts(list)),
        el("ul", { class: "plain" }, list.map((a) => el("li", { "data-id": a.id },
          el("div", { class: "item-line" },
            el("span", { class: "pill " + (a.priority === 1 ? "alert" : "quiet"), title: "priority (1 most urgent)" }, "P" + a.priority),
            el("span", { class: "grow" }, a.action),
            el("span", { class: "pill " + STATUS[a.status][0] }, STATUS[a.status][1])),
          el("div", { class: "small muted" }, a.reason)))))
      : el("p", { class: "muted" }, "No actions were suggested."));
  }

  function renderSuggestions(suggestions) {
    const list = dedupe(suggestions, (s) => s.kind + ":" + s.id);
    $("suggestions").replaceChildren(list.length
      ? el("div", {}, el("div", { class: "small muted", style: "margin-bottom:4px" }, counts(list)),
        el("ul", { class: "plain" }, list.map((s) => el("li", { class: "item-line", "data-id": s.id },
          el("span", { class: "pill quiet" }, s.kind),
          el("span", { class: "grow" }, s.text, s.times > 1 ? el("span", { class: "muted small" }, ` (shown ${s.times}×)`) : null),
          el("span", { class: "pill " + STATUS[s.status][0] }, STATUS[s.status][1])))))
      : el("p", { class: "muted" }, "No suggestions were shown."));
  }

  // ------------------------------------------------------------------ review form
  function scorecardItems(checklist) {
    const items = ((checklist && checklist.items) || []).map((i) => ({ id: i.id, label: i.label, hint: i.done ? "ticked live" : "missed live", done: i.done }));
    items.push({ id: "resolution", label: "Resolution", hint: "" }, { id: "empathy", label: "Empathy", hint: "" });
    return items;
  }

  function renderScorecard(checklist) {
    const items = scorecardItems(checklist);
    state.checklistLabels.resolution = "Resolution";
    state.checklistLabels.empathy = "Empathy";
    $("scorecard").tBodies[0].replaceChildren(...items.map((item) => el("tr", { "data-item": item.id },
      el("td", {}, item.label),
      el("td", { class: "hint" }, item.hint ? el("span", { class: item.done ? "mood-pos" : "muted" }, item.hint) : ""),
      el("td", { class: "right" }, el("span", { class: "scores", role: "radiogroup", "aria-label": item.label + " score" },
        [0, 1, 2, 3, 4, 5].map((n) => el("label", {}, el("input", { type: "radio", name: "score-" + item.id, value: n, "aria-label": `${item.label}: ${n}` }), el("span", {}, n))))),
    )));
  }

  function renderTarget() {
    const line = state.selected;
    $("comment-target").replaceChildren(...(line
      ? ["Comment on ", el("strong", { class: "speaker-" + line.u.channel }, `${speaker(line.u.channel)} ${clock(line.u.start)}`), ": “" + short(line.u.text) + "” ",
        el("button", { type: "button", class: "linkish", onclick: clearSelection }, "general comment instead")]
      : [el("span", { class: "muted" }, "General comment. Click a transcript line to comment on it.")]));
  }

  function clearSelection() {
    if (state.selected) { state.selected.li.classList.remove("selected"); state.selected.li.removeAttribute("aria-current"); }
    state.selected = null;
    renderTarget();
  }

  function takeComment() {
    const text = $("comment").value.trim();
    if (!text) return null;
    const line = state.selected;
    const comment = line ? { utterance: line.u.utterance, channel: line.u.channel, text } : { text };
    $("comment").value = "";
    return comment;
  }

  function renderPending() {
    $("pending-comments").replaceChildren(...state.pending.map((c, i) => el("li", { class: "item-line comment" },
      el("span", { class: "grow" }, c.channel ? el("span", { class: "ref" }, `${speaker(c.channel)} ${clock(state.lines.get(key(c.channel, c.utterance))?.u.start)} · `) : el("span", { class: "ref" }, "General · "), c.text),
      el("button", { type: "button", class: "linkish", "aria-label": "Remove comment", onclick: () => { state.pending.splice(i, 1); renderPending(); } }, "remove"))));
  }

  $("add-comment").addEventListener("click", () => {
    const comment = takeComment();
    if (!comment) { reviewStatus("Write the comment first.", true); $("comment").focus(); return; }
    state.pending.push(comment);
    renderPending();
    reviewStatus("");
  });

  function reviewStatus(text, bad = false) {
    $("review-status").textContent = text;
    $("review-status").className = "status" + (bad ? " bad" : "");
  }

  const form = $("review-form");
  form.elements.reviewer.value = localStorage.getItem("callcue.reviewer") || "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const scores = {};
    for (const row of $("scorecard").tBodies[0].rows) {
      const picked = row.querySelector("input:checked");
      if (picked) scores[row.dataset.item] = Number(picked.value);
    }
    if (!Object.keys(scores).length) { reviewStatus("Score at least one item (0 to 5).", true); return; }
    const comments = state.pending.slice();
    const extra = takeComment();
    if (extra) comments.push(extra);
    const reviewer = form.elements.reviewer.value.trim();
    const body = { scores, comments };
    if (reviewer) body.reviewer = reviewer;
    $("submit-review").disabled = true;
    reviewStatus("Saving…");
    try {
      await api(base + "/reviews", { method: "POST", body });
      if (reviewer) localStorage.setItem("callcue.reviewer", reviewer);
      state.pending = [];
      renderPending();
      for (const input of $("scorecard").querySelectorAll("input:checked")) input.checked = false;
      reviewStatus("Review saved.");
      state.reviews = (await api(base + "/reviews")).reviews || [];
      renderReviews();
    } catch (error) {
      if (extra) { $("comment").value = extra.text; }
      const [title, text] = problem(error);
      reviewStatus(error.status === 403 ? `${title}: ${text} (reviews need the qa, supervisor or admin role)` : `${title}: ${text}`, true);
    } finally {
      $("submit-review").disabled = false;
    }
  });

  function renderReviews() {
    const reviews = state.reviews;
    $("reviews-title").textContent = reviews.length ? `Reviews (${reviews.length})` : "Reviews";
    for (const li of $("lines").querySelectorAll(".notes")) li.replaceChildren();
    const noted = new Map();
    for (const r of reviews) for (const c of r.comments) if (c.channel && c.utterance !== null) noted.set(key(c.channel, c.utterance), (noted.get(key(c.channel, c.utterance)) || 0) + 1);
    for (const [k, n] of noted) {
      const line = state.lines.get(k);
      if (line) line.li.querySelector(".notes").append(el("span", { class: "tags" }, el("span", { class: "pill warn", title: "review comments on this line" }, n === 1 ? "1 comment" : `${n} comments`)));
    }
    if (!reviews.length) { $("reviews").replaceChildren(el("p", { class: "muted" }, "No reviews yet.")); return; }
    $("reviews").replaceChildren(el("ul", { class: "plain" }, reviews.slice().reverse().map((r) => el("li", { class: "review", "data-review": r.id },
      el("div", { class: "item-line" },
        el("span", { class: "avg num" }, r.score === null ? "—" : (Math.round(r.score * 10) / 10) + " / 5"),
        el("span", { class: "grow" }, el("strong", {}, r.reviewer || "anonymous"), el("span", { class: "muted small" }, " · " + when(r.created_at)))),
      el("div", { class: "scoreline" }, Object.entries(r.scores).map(([item, v]) => `${state.checklistLabels[item] || words(item)} ${v}`).join(" · ")),
      r.comments.length ? el("ul", { class: "plain" }, r.comments.map((c) => el("li", { class: "comment" },
        c.channel && c.utterance !== null ? [jumpButton(c.channel, c.utterance) || el("span", { class: "ref" }, `${speaker(c.channel)} line ${c.utterance}`), " "] : el("span", { class: "ref" }, "General · "),
        c.text))) : null))));
  }

  if (!callId) fatal({ status: 404, message: "No call id in the address." }); else load();
})();
