// Agent screen: the call's checklist (checklist events): done and to do, late ones marked, the
// ones just changed highlighted.
import { el } from "../common.js";
import { $, fill } from "./page.js";

export function onChecklist(event) {
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

