// The logic page: each rule's live state from its image entry "logic:<name>" (RuleState.to_dict in
// bms/logic/runner.py: q quality, why, out last commanded per output, block state, n commands) and the live values
// of the points it reads and writes, over the websocket; enable/disable through the REST API, which checks the rule
// again and answers 400 with the reason when it cannot be enabled.
(function () {
  "use strict";
  const page = document.getElementById("logic-page");
  if (!page) return;
  const rows = [...document.querySelectorAll("#rule-table tr[data-rule]")];
  const statusEl = document.getElementById("live-status");
  const notice = document.getElementById("logic-notice");

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function formatValue(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "on" : "off";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
    return JSON.stringify(value);
  }

  // Every name the page shows: the rules' entries and their points.
  const wanted = new Set();
  for (const row of rows) {
    wanted.add("logic:" + row.dataset.rule);
    for (const name of [...row.dataset.reads.split(","), ...row.dataset.writes.split(",")]) if (name) wanted.add(name);
  }

  function showPoint(name, entry) {
    document.querySelectorAll(`#rule-table [data-point="${CSS.escape(name)}"] .io-value`).forEach((cell) => {
      cell.textContent = entry ? formatValue(entry.value) : "–";
      cell.title = entry ? `${entry.quality}${entry.time ? ", " + entry.time : ""}` : "not in the live image";
      cell.classList.toggle("error", Boolean(entry) && entry.quality !== "good");
    });
  }

  function showRule(row, entry) {
    const quality = row.querySelector(".state .quality");
    const why = row.querySelector(".rule-why");
    const block = row.querySelector(".block");
    const state = entry && entry.value && typeof entry.value === "object" ? entry.value : null;
    if (!state) {
      quality.textContent = row.classList.contains("disabled") ? "disabled" : "not running";
      quality.className = "quality q-uncertain";
      quality.title = "the engine holds no state for this rule (not loaded, or not running rules yet)";
      why.textContent = "";
      block.textContent = "–";
      row.querySelectorAll(".io-commanded").forEach((cell) => {
        cell.textContent = "–";
      });
      return;
    }
    quality.textContent = state.q || "good";
    quality.className = "quality q-" + (state.q || "good");
    quality.title = `${state.n || 0} commands so far`;
    why.textContent = state.why || "";
    const out = state.out || [];
    row.querySelectorAll(".writes [data-index]").forEach((cell) => {
      cell.querySelector(".io-commanded").textContent = formatValue(out[Number(cell.dataset.index)]);
    });
    const blockState = state.block || {};
    block.textContent = Object.keys(blockState).length
      ? Object.entries(blockState).map(([key, value]) => `${key}=${formatValue(value)}`).join(" ")
      : "–";
  }

  function apply(entries, replace) {
    for (const row of rows) {
      const name = "logic:" + row.dataset.rule;
      if (Object.prototype.hasOwnProperty.call(entries, name)) showRule(row, entries[name]);
      else if (replace) showRule(row, null);
    }
    for (const name of wanted) {
      if (name.startsWith("logic:")) continue;
      if (Object.prototype.hasOwnProperty.call(entries, name)) showPoint(name, entries[name]);
      else if (replace) showPoint(name, null);
    }
  }

  if (window.bmsLive && rows.length) {
    window.bmsLive.open({
      // Narrow to our names when the image holds them all; otherwise stay subscribed to everything, so that a rule
      // the engine starts running later arrives (a new entry comes with a new snapshot).
      select(entries) {
        const names = [...wanted];
        return names.every((name) => Object.prototype.hasOwnProperty.call(entries, name)) ? names : null;
      },
      snapshot(entries) {
        apply(entries, true);
      },
      delta(entries) {
        apply(entries, false);
      },
      status(text, cls) {
        statusEl.textContent = text;
        statusEl.className = "conn " + cls;
      },
    });
  } else {
    statusEl.textContent = rows.length ? "unavailable" : "no rules";
  }

  // ---- enable / disable ----
  document.querySelectorAll("button.rule-switch").forEach((button) => {
    button.addEventListener("click", async () => {
      const row = button.closest("tr");
      const enable = button.dataset.enable === "1";
      button.disabled = true;
      notice.textContent = "";
      notice.className = "";
      try {
        const response = await fetch(`${page.dataset.api}${row.dataset.id}/${enable ? "enable" : "disable"}`, {
          method: "POST",
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken() },
        });
        const body = await response.json();
        if (!response.ok) {
          notice.textContent = `${row.dataset.rule} not ${enable ? "enabled" : "disabled"}: ${body.detail || response.status}`;
          notice.className = "error";
          return;
        }
        row.classList.toggle("disabled", !body.enabled);
        row.querySelector(".enabled-text").textContent = body.enabled ? "yes" : "no";
        button.dataset.enable = body.enabled ? "0" : "1";
        button.textContent = body.enabled ? "Disable" : "Enable";
        notice.textContent = `${row.dataset.rule} ${body.enabled ? "enabled" : "disabled"}; the engine reloads it.`;
        notice.className = "ok";
      } catch (err) {
        notice.textContent = "Could not reach the server: " + err;
        notice.className = "error";
      } finally {
        button.disabled = false;
      }
    });
  });
})();
