// The priority-array panel of the points page (ADR 0016): a writable point's 16 slots, the one in control, who set
// each and until when (times in the site's time zone), and, for users who may write, a manual override with an
// expiry and its relinquish. Everything goes through GET/POST /api/v1/points/<name>/priority-array: the one command
// path (permission, range, audit), whose refusals are shown as they come.
(function () {
  "use strict";
  const dialog = document.getElementById("priority-dialog");
  if (!dialog) return;
  const zone = dialog.dataset.siteZone || "UTC";
  const canOverride = dialog.dataset.canOverride === "1";
  const slotsBody = document.querySelector("#priority-slots tbody");
  const summary = document.getElementById("priority-summary");
  const result = document.getElementById("priority-result");
  let target = null; // the button's dataset of the point shown
  let keptBy = "server";

  let timeFormat;
  try {
    timeFormat = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  } catch (err) {
    timeFormat = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", dateStyle: "short", timeStyle: "medium" });
  }

  function when(iso) {
    return iso ? timeFormat.format(new Date(iso)) : "";
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function formatValue(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "on" : "off";
    if (typeof value === "number" && (target.kind === "real" || !Number.isInteger(value))) return value.toFixed(2);
    return String(value);
  }

  function url() {
    return dialog.dataset.api.replace("POINT", encodeURIComponent(target.point));
  }

  function setResult(text, cls) {
    result.textContent = text;
    result.className = cls || "";
  }

  function render(array) {
    keptBy = array.kept_by;
    const winner = array.effective_priority;
    slotsBody.replaceChildren(
      ...array.slots.map((slot) => {
        const row = document.createElement("tr");
        row.dataset.priority = String(slot.priority);
        const empty = slot.value === null && !slot.source;
        row.className = [empty ? "empty" : "", slot.priority === winner ? "winner" : "", slot.priority === 8 ? "manual" : ""]
          .filter(Boolean).join(" ");
        const by = slot.source ? `${slot.source}${slot.user ? " (" + slot.user + ")" : ""}` : "";
        for (const [text, cls] of [
          [String(slot.priority), "slot"],
          [empty ? "–" : formatValue(slot.value), "num value"],
          [by, "by"],
          [when(slot.set_at), "since"],
          [slot.expires_at ? when(slot.expires_at) : "", "until"],
        ]) {
          const cell = document.createElement("td");
          cell.className = cls;
          cell.textContent = text;
          row.append(cell);
        }
        return row;
      }),
    );
    const unit = target.unit ? " " + target.unit : "";
    if (winner) {
      summary.textContent = `In control: priority ${winner}, ${formatValue(array.effective_value)}${unit}.`;
    } else if (array.effective_value !== null && array.effective_value !== undefined) {
      summary.textContent = `Every slot is empty: the relinquish default ${formatValue(array.effective_value)}${unit} applies.`;
    } else {
      summary.textContent = "Every slot is empty and there is no relinquish default: the device keeps what it has.";
    }
    summary.dataset.effectivePriority = winner ? String(winner) : "";
    if (array.kept_by === "device") summary.textContent += " (the device's own array)";
    const duration = document.getElementById("priority-duration");
    if (duration) {
      // a device's own array (BACnet) has no expiry: the server refuses expires_in for it
      duration.disabled = array.kept_by === "device";
      if (array.kept_by === "device") duration.value = "";
    }
  }

  async function load() {
    summary.textContent = "Reading…";
    try {
      const response = await fetch(url(), { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) {
        summary.textContent = body.detail || `The server answered ${response.status}.`;
        slotsBody.replaceChildren();
        return;
      }
      render(body);
    } catch (err) {
      summary.textContent = "Could not reach the server: " + err;
    }
  }

  async function send(payload) {
    setResult("Sending…");
    let response;
    let body;
    try {
      response = await fetch(url(), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), "X-BMS-Client": "web-manager" },
        body: JSON.stringify(payload),
      });
      body = await response.json();
    } catch (err) {
      setResult("Could not reach the server: " + err, "error");
      return;
    }
    if (!body.command) {
      setResult(body.detail || `The server answered ${response.status}.`, "error"); // refused: nothing was recorded
      return;
    }
    const command = body.command;
    const slot = `priority ${payload.priority}`;
    if (command.status === "succeeded") {
      setResult(payload.value === null ? `${slot} relinquished. ${command.error || ""}` : `${slot} set: ${command.error || "written"}`, "ok");
    } else if (command.status === "held") {
      setResult(`${slot} set, device not written: ${command.error}`, "ok");
    } else if (["failed", "expired", "unknown"].includes(command.status)) {
      setResult(`Command ${command.status}: ${command.error}`, "error");
    } else {
      setResult(`Command ${command.status}; its outcome follows in the array.`);
    }
    if (body.priority_array) render(body.priority_array);
    else load();
  }

  function priorityChosen() {
    const level = document.getElementById("priority-level");
    return level ? Number(level.value) : 8;
  }

  document.querySelectorAll("button.priority").forEach((button) => {
    button.addEventListener("click", () => {
      target = button.dataset;
      document.getElementById("priority-point").textContent = target.point;
      const isBool = target.type === "bool";
      const numberLabel = document.getElementById("priority-number-label");
      if (numberLabel) {
        numberLabel.hidden = isBool;
        document.getElementById("priority-bool-label").hidden = !isBool;
        document.getElementById("priority-value").value = "";
      }
      setResult("");
      slotsBody.replaceChildren();
      dialog.showModal();
      load();
    });
  });

  if (canOverride) {
    document.getElementById("priority-override-submit").addEventListener("click", () => {
      let value;
      if (target.type === "bool") {
        value = document.getElementById("priority-bool").value === "true";
      } else {
        const text = document.getElementById("priority-value").value.trim().replace(",", ".");
        value = Number(text);
        if (text === "" || !Number.isFinite(value)) {
          setResult("Enter a number.", "error");
          return;
        }
      }
      const payload = { value: value, priority: priorityChosen() };
      const seconds = document.getElementById("priority-duration").value;
      if (seconds && keptBy === "server") payload.expires_in = Number(seconds);
      send(payload);
    });
    document.getElementById("priority-relinquish").addEventListener("click", () => {
      send({ value: null, priority: priorityChosen() });
    });
  }
  document.getElementById("priority-refresh").addEventListener("click", load);
  document.getElementById("priority-close").addEventListener("click", () => dialog.close());
})();
