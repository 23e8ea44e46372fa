// Live values for the points page: a snapshot, then deltas; a sequence gap asks for a resync.
// Also the write dialog, which posts to the JSON API (the one command path). When the socket drops or this
// node says it is no longer active, follow.js looks for the active node and moves the page there.
// The same stream carries the alarms ("alarm:<name>" entries): each point's row shows the state of its most
// pressing alarm, and the entries and "alarms:summary" feed the header's counts and sound (alarm-header.js).
(function () {
  "use strict";
  const ALARM_PREFIX = "alarm:";
  const SUMMARY = "alarms:summary";
  // the most pressing first
  const ALARM_RANK = ["active_unacked", "rtn_unacked", "active_acked", "shelved", "suppressed", "out_of_service", "normal"];
  const header = window.bmsAlarmHeader || { summary() {}, alarm() {}, snapshotDone() {}, stale() {} };
  const pointAlarms = new Map(); // point name -> Map(alarm name -> alarm value)
  const alarmPoints = new Map(); // alarm name -> point name
  const rows = new Map();
  document.querySelectorAll("tr[data-point]").forEach((tr) => rows.set(tr.dataset.point, tr));
  const statusEl = document.getElementById("live-status");
  const seqEl = document.getElementById("live-seq");
  let seq = null;
  let socket = null;
  let retryDelay = 500;
  const follow = window.bmsFollow || { start: () => false, showRole: () => {} };

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = "conn " + cls;
  }

  // kind comes from the row: "real" points (floats, scaled values) always show two decimals.
  function formatValue(value, kind) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "on" : "off";
    if (typeof value === "number" && (kind === "real" || !Number.isInteger(value))) return value.toFixed(2);
    return String(value);
  }

  function render(name, state) {
    const tr = rows.get(name);
    if (!tr) return;
    const valueCell = tr.querySelector(".value");
    const qualityEl = tr.querySelector(".quality");
    const timeCell = tr.querySelector(".time");
    if (state === null) {
      valueCell.textContent = "–";
      qualityEl.textContent = "removed";
      qualityEl.className = "quality q-bad";
      return;
    }
    valueCell.textContent = formatValue(state.value, tr.dataset.kind);
    valueCell.dataset.raw = JSON.stringify(state.value);
    qualityEl.textContent = state.quality.replace("_", " ");
    qualityEl.className = "quality q-" + state.quality;
    timeCell.textContent = state.time ? state.time.replace("T", " ").slice(0, 19) : "–";
    tr.classList.toggle("not-good", state.quality !== "good");
  }

  function rank(value) {
    const at = ALARM_RANK.indexOf(value.state);
    return at < 0 ? ALARM_RANK.length : at;
  }

  function setAlarm(name, entry, touched) {
    const before = alarmPoints.get(name);
    if (before !== undefined) {
      pointAlarms.get(before)?.delete(name);
      alarmPoints.delete(name);
      touched.add(before);
    }
    header.alarm(name, entry ? entry.value : null);
    if (!entry || !entry.value || entry.value.annunciated === false) return;
    const point = entry.value.point;
    if (!pointAlarms.has(point)) pointAlarms.set(point, new Map());
    pointAlarms.get(point).set(name, entry.value);
    alarmPoints.set(name, point);
    touched.add(point);
  }

  // The alarm cell of a point's row: its most pressing alarm (then the most urgent priority), and how many more.
  function renderAlarms(point) {
    const tr = rows.get(point);
    if (!tr) return;
    const td = tr.querySelector("td.alarm");
    const alarms = [...(pointAlarms.get(point) || new Map())].sort(
      ([, a], [, b]) => rank(a) - rank(b) || (a.priority ?? 10000) - (b.priority ?? 10000),
    );
    if (!alarms.length) {
      td.replaceChildren();
      delete td.dataset.alarmState;
      delete td.dataset.alarm;
      return;
    }
    const [name, worst] = alarms[0];
    const chip = document.createElement("a");
    chip.href = "/alarms/?state=all";
    chip.className = "alarm-state a-" + worst.state;
    chip.style.setProperty("--alarm-colour", worst.colour || "#757575");
    const pressing = alarms.filter(([, value]) => value.state !== "normal").length;
    chip.textContent = worst.state.replaceAll("_", " ") + (pressing > 1 ? ` +${pressing - 1}` : "");
    chip.title = alarms.map(([n, value]) => `${n}: ${value.state.replaceAll("_", " ")}, ${value.message}`).join("\n");
    td.replaceChildren(chip);
    td.dataset.alarmState = worst.state;
    td.dataset.alarm = name;
  }

  // replace: a snapshot (everything held is replaced), else a delta
  function apply(points, replace) {
    const touched = new Set();
    if (replace) {
      for (const name of [...alarmPoints.keys()]) {
        if (!Object.prototype.hasOwnProperty.call(points, ALARM_PREFIX + name)) setAlarm(name, null, touched);
      }
    }
    if (replace && !Object.prototype.hasOwnProperty.call(points, SUMMARY)) header.summary(null); // no alarms
    for (const [name, state] of Object.entries(points)) {
      if (name === SUMMARY) header.summary(state ? state.value : null);
      else if (name.startsWith(ALARM_PREFIX)) setAlarm(name.slice(ALARM_PREFIX.length), state, touched);
      else render(name, state);
    }
    touched.forEach(renderAlarms);
    if (replace) header.snapshotDone();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/live/");
    setStatus("connecting…", "conn-connecting");
    socket.onopen = () => {
      retryDelay = 500;
      window.bmsLiveConnectedAt = Date.now();
      setStatus("connected", "conn-ok");
    };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "snapshot") {
        seq = msg.seq;
        apply(msg.points, true);
      } else if (msg.type === "delta") {
        if (seq === null || msg.from !== seq) {
          seq = null;
          socket.send(JSON.stringify({ type: "resync" }));
          return;
        }
        seq = msg.seq;
        apply(msg.points, false);
      } else if (msg.type === "error" || msg.type === "status") {
        setStatus(msg.message, "conn-warn");
        return;
      } else if (msg.type === "role") {
        follow.showRole(msg);
        if (msg.role !== "active" && follow.start()) setStatus("this node is no longer active; moving to the active node…", "conn-warn");
        return;
      }
      seqEl.textContent = seq === null ? "–" : String(seq);
      if (statusEl.classList.contains("conn-warn")) setStatus("connected", "conn-ok");
    };
    socket.onclose = (event) => {
      seq = null;
      header.stale();
      if (event.code === 4503) {
        // The node is up but its channel layer (Redis) is not: no live data until it returns. Retry slowly,
        // and still check whether another node has become active meanwhile.
        follow.start();
        setStatus("live updates interrupted (server channel layer down); retrying…", "conn-bad");
        setTimeout(connect, 3000);
        return;
      }
      if (event.code === 4401) {
        // logged out (here or in another tab): no live data without a login; a new login reloads the page
        setStatus("not logged in", "conn-bad");
        return;
      }
      if (follow.start()) setStatus("connection lost; looking for the active node…", "conn-bad");
      else setStatus("disconnected, retrying…", "conn-bad");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    };
  }

  // --- write dialog ---------------------------------------------------------------
  const dialog = document.getElementById("write-dialog");
  const form = document.getElementById("write-form");
  const resultEl = document.getElementById("write-result");
  const valueInput = document.getElementById("write-value");
  const boolSelect = document.getElementById("write-bool");
  let target = null;

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  document.querySelectorAll("button.write").forEach((button) => {
    button.addEventListener("click", () => {
      target = button.dataset;
      const isBool = target.type === "bool";
      document.getElementById("write-point").textContent = target.point;
      document.getElementById("write-number-label").hidden = isBool;
      document.getElementById("write-bool-label").hidden = !isBool;
      const range = [target.min, target.max].some((v) => v !== "")
        ? `Allowed: ${target.min || "−∞"} … ${target.max || "∞"} ${target.unit}` : "";
      document.getElementById("write-range").textContent = range;
      valueInput.value = "";
      resultEl.textContent = "";
      resultEl.className = "";
      dialog.showModal();
      (isBool ? boolSelect : valueInput).focus();
    });
  });
  document.getElementById("write-cancel").addEventListener("click", () => dialog.close());

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let value;
    if (target.type === "bool") {
      value = boolSelect.value === "true";
    } else {
      const text = valueInput.value.trim().replace(",", ".");
      value = Number(text);
      if (text === "" || !Number.isFinite(value)) {
        resultEl.textContent = "Enter a number.";
        resultEl.className = "error";
        return;
      }
    }
    resultEl.textContent = "Sending…";
    resultEl.className = "";
    const commandId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^A-Za-z0-9_.:-]/g, "");
    try {
      const response = await fetch(`/api/points/${encodeURIComponent(target.point)}/write`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), "X-BMS-Client": "web-manager" },
        body: JSON.stringify({ value: value, command_id: commandId }),
        credentials: "same-origin",
      });
      const body = await response.json();
      // An API error is {"error": code, "message"}; a command's own "error" is its outcome's detail (ADR 0016)
      if (!response.ok && body.message !== undefined && body.status === undefined) {
        resultEl.textContent = body.message;
        resultEl.className = "error";
      } else if (body.status === "succeeded") {
        resultEl.textContent = `Written: ${formatValue(body.value, target.kind)} ${target.unit}`;
        resultEl.className = "ok";
      } else if (body.status === "held") {
        // the slot is set, but a higher priority is in control (server priority arrays, ADR 0016)
        resultEl.textContent = `Slot set, device not written: ${body.error}`;
        resultEl.className = "error";
      } else if (body.status === "failed") {
        resultEl.textContent = `Not written: ${body.error}`;
        resultEl.className = "error";
      } else if (body.status === "expired") {
        resultEl.textContent = `Not sent: ${body.error}`;
        resultEl.className = "error";
      } else if (body.status === "unknown") {
        resultEl.textContent = `Outcome unknown: ${body.error}`;
        resultEl.className = "error";
      } else {
        const until = body.expires_at ? ` (sent only if started before ${body.expires_at})` : "";
        resultEl.textContent = `Command ${body.status}${until}; see the command log for its outcome.`;
      }
    } catch (err) {
      resultEl.textContent = "Could not reach the server: " + err;
      resultEl.className = "error";
    }
  });

  connect();
})();
