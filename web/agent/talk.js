// Agent screen: the Talk panel, from call.analytics (at most once a second): who talks how
// much, overtalk, interruptions, the longest silence, the agent's pace and answer time.
import { el } from "../common.js";
import { $, fill } from "./page.js";

export function onAnalytics(event) {
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

