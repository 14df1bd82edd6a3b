// "Start a test call": the microphone becomes the customer channel of a call streamed through
// the native ingest protocol (ws /v1/ingest); the agent screen of that call opens below.
import * as callcue from "./common.js";

(() => {
  const $ = (id) => document.getElementById(id);
  const startButton = $("start"), stopButton = $("stop"), status = $("call-status");
  const level = $("level"), frame = $("agent-frame"), screenLink = $("screen-link");
  let ws = null, context = null, stream = null, node = null, callId = null, sent = 0;

  function say(text, bad = false) {
    status.textContent = text;
    status.classList.toggle("bad", bad);
  }

  async function start() {
    startButton.disabled = true;
    callId = "web-" + new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "") + "-" +
      Math.random().toString(36).slice(2, 6);
    say("asking for the microphone…");
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (error) {
      say("no microphone: " + error.message + " (allow microphone access and try again)", true);
      startButton.disabled = false;
      return;
    }
    context = new AudioContext({ sampleRate: 16000 });
    await context.audioWorklet.addModule("/static/pcm-worklet.js");
    const source = context.createMediaStreamSource(stream);
    node = new AudioWorkletNode(context, "pcm-capture");
    const analyser = context.createAnalyser();
    source.connect(analyser);
    source.connect(node);
    meter(analyser);

    const caller = $("caller").value;
    const metadata = { agent: "you", source_page: "softphone" };
    if (caller) metadata.caller = caller;
    ws = new WebSocket(callcue.wsUrl("/v1/ingest"));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "start", call_id: callId, encoding: "pcm16", sample_rate: context.sampleRate,
        channels: ["customer"], metadata,
      }));
    };
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "started") {
        say("on a call (" + callId + "): speak as the customer");
        stopButton.disabled = false;
        node.port.onmessage = (chunk) => {
          if (ws && ws.readyState === WebSocket.OPEN) { ws.send(chunk.data); sent += chunk.data.byteLength; }
        };
        const screen = callcue.link("/agent/" + encodeURIComponent(callId));
        frame.src = screen;
        frame.hidden = false;
        screenLink.href = screen;
        screenLink.hidden = false;
      } else if (event.type === "error") {
        say(event.message, true);
      } else if (event.type === "stopped") {
        say("call ended: " + callId + " (" + Math.round(sent / 32000) + " s sent) — it is stored for QA");
      }
    };
    ws.onclose = (close) => {
      if (!stopButton.disabled) say("the connection closed (" + close.code + " " + close.reason + ")", true);
      cleanup();
    };
  }

  function stop() {
    stopButton.disabled = true;
    say("hanging up: the last words are being transcribed…");
    if (node) node.port.onmessage = null;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
  }

  function cleanup() {
    stopButton.disabled = true;
    startButton.disabled = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (context) context.close();
    stream = context = node = null;
    ws = null;
  }

  function meter(analyser) {
    const data = new Uint8Array(analyser.fftSize);
    const tick = () => {
      if (!context) { level.value = 0; return; }
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
      level.value = peak / 128;
      requestAnimationFrame(tick);
    };
    tick();
  }

  async function liveCalls() {
    const list = $("live-calls");
    try {
      const { calls } = await callcue.api("/v1/calls/live");
      list.replaceChildren(...(calls.length ? calls.map((c) => callcue.el("li", {},
        callcue.el("a", { href: callcue.link("/agent/" + encodeURIComponent(c.call_id)) }, c.call_id),
        " ", callcue.el("span", { class: "muted" }, c.source + ", " + callcue.clock(c.duration))))
        : [callcue.el("li", { class: "muted" }, "none right now")]));
    } catch (error) {
      list.replaceChildren(callcue.el("li", { class: "muted" }, error.message));
    }
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  if (!window.AudioWorkletNode || !navigator.mediaDevices) {
    say("this browser cannot capture audio here (a secure origin is needed: use http://127.0.0.1 or https)", true);
    startButton.disabled = true;
  }
  for (const a of document.querySelectorAll("a[data-page]")) a.href = callcue.link(a.getAttribute("href"));
  liveCalls();
  setInterval(liveCalls, 3000);
})();
