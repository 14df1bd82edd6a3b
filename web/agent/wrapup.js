// Agent screen: the wrap-up (call.wrapup at call end): the predicted disposition and after-call
// note, to accept or edit and save (POST /v1/calls/{id}/wrapup); read-only for a supervisor.
import { api, el } from "../common.js";
import { $, callId, fill, readonly } from "./page.js";

export function onWrapup(event) {
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
    const saved = await api("/v1/calls/" + encodeURIComponent(callId) + "/wrapup", {
      method: "POST",
      body: { disposition: $("wrapup-disposition").value, note: $("wrapup-note").value },
    });
    status.textContent = "Saved: " + saved.label;
    $("wrapup-panel").dataset.saved = saved.disposition;
  } catch (error) {
    status.textContent = "Not saved: " + (error.message || error);
  }
});

