// The redundancy page: refreshes its fields from /api/redundancy/status every second, and the Switchover button.
(function () {
  "use strict";
  const root = document.getElementById("pair-page");
  if (!root) return;
  const button = document.getElementById("switchover");
  const reasonEl = document.getElementById("switchover-reason");
  const resultEl = document.getElementById("switchover-result");
  const messageEl = document.getElementById("pair-message");

  function lookup(obj, path) {
    return path.split(".").reduce((value, key) => (value === null || value === undefined ? undefined : value[key]), obj);
  }

  function format(el, value, payload) {
    const kind = el.dataset.kind;
    if (kind === "witness") {
      const w = payload.witness || {};
      return w.configured ? (w.connected ? "connected" : "not connected") : "none";
    }
    if (value === null || value === undefined || value === "") return el.dataset.f.endsWith("comment") ? "" : "–";
    if (kind === "verified") return value ? "Verified" : "Not verified";
    if (kind === "fault") {
      const reason = lookup(payload, "partners.0.fault_reason");
      return value ? "Fault" + (reason ? ": " + reason : "") : "No";
    }
    if (typeof value === "boolean") return value ? "Yes" : "No";
    if (el.dataset.unit) return (Number.isInteger(value) ? value : value.toFixed(1)) + " " + el.dataset.unit;
    return String(value);
  }

  function renderHistory(changes) {
    const body = document.querySelector("#pair-history tbody");
    body.replaceChildren();
    if (!changes.length) {
      const tr = body.insertRow();
      const td = tr.insertCell();
      td.colSpan = 3;
      td.textContent = "No role changes recorded.";
      return;
    }
    for (const change of changes) {
      const tr = body.insertRow();
      tr.insertCell().textContent = change.time.slice(0, 19).replace("T", " ");
      tr.insertCell().textContent = change.node;
      const reason = tr.insertCell();
      reason.className = "reason";
      reason.textContent = change.reason;
    }
  }

  function render(payload) {
    root.querySelectorAll("[data-f]").forEach((el) => {
      el.textContent = format(el, lookup(payload, el.dataset.f), payload);
    });
    messageEl.hidden = !payload.message;
    messageEl.textContent = payload.message || "";
    if (button) {
      button.disabled = !payload.switchover.allowed;
      reasonEl.textContent = payload.switchover.reason;
    }
    renderHistory(payload.role_changes || []);
    root.dataset.role = payload.role;
    root.dataset.updated = String(Date.now());
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const payload = await response.json();
      render(payload);
      if (payload.role !== "active" && window.bmsFollow) window.bmsFollow.start();
    } catch (err) {
      messageEl.hidden = false;
      messageEl.textContent = "This node is not answering (" + err.message + "); looking for the active node…";
      if (window.bmsFollow) window.bmsFollow.start();
    }
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  if (button) {
    button.addEventListener("click", async () => {
      if (!window.confirm("Hand control to the other node now?")) return;
      button.disabled = true;
      resultEl.textContent = "Requesting…";
      resultEl.className = "";
      try {
        const response = await fetch(root.dataset.switchoverUrl, {
          method: "POST",
          headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
          credentials: "same-origin",
        });
        const body = await response.json();
        resultEl.textContent = body.message;
        resultEl.className = response.status === 202 ? "ok" : "error";
      } catch (err) {
        resultEl.textContent = "Could not reach this node: " + err;
        resultEl.className = "error";
      }
    });
  }

  refresh();
  setInterval(refresh, 1000);
})();
