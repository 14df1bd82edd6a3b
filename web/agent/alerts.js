// Agent screen: alerts under the header bar, newest first, the last three kept; each can be
// hidden. From `alert` events and the call's own errors.
import { el } from "../common.js";
import { $ } from "./page.js";

const MAX_ALERTS = 3;

export function onAlert(event) {
  addAlert(event);
}

export function addAlert(event) {
  const box = $("alerts");
  const severity = ["info", "warning", "critical"].includes(event.severity) ? event.severity : "warning";
  const node = el("div", { class: "alert sev-" + severity, "data-code": event.code || "" },
    el("span", { class: "alert-icon", "aria-hidden": "true" }, severity === "info" ? "i" : "!"),
    el("span", { class: "alert-text" }, event.message || event.code),
    el("button", { type: "button", class: "icon", "aria-label": "Hide this alert", onclick: () => node.remove() }, "✕"));
  box.prepend(node);
  while (box.children.length > MAX_ALERTS) box.lastElementChild.remove();
}

