// The alarm console: every alarm's live state (the entries "alarm:<name>" of the live websocket, see
// docs/live-protocol.md), most urgent first (priority, then newest), filtered by state, class and area; and the
// operator's actions (acknowledge, shelve, unshelve, each with a comment), posted to /alarms/action. On a node
// that is not active the server refuses them (503, recorded); the refusal is shown as it is.
(function () {
  "use strict";
  const root = document.getElementById("alarm-console");
  if (!root) return;
  const PREFIX = "alarm:";
  const SUMMARY = "alarms:summary";
  const UNACKED = new Set(["active_unacked", "rtn_unacked"]);
  const ACTIVE = new Set(["active_unacked", "active_acked"]);
  const STATE_LABELS = {
    normal: "normal",
    active_unacked: "active, unacknowledged",
    active_acked: "active, acknowledged",
    rtn_unacked: "returned, unacknowledged",
    shelved: "shelved",
    suppressed: "suppressed by design",
    out_of_service: "out of service",
  };
  const FILTERS = {
    attention: (v) => ACTIVE.has(v.state) || UNACKED.has(v.state),
    unacked: (v) => UNACKED.has(v.state),
    active: (v) => ACTIVE.has(v.state),
    shelved: (v) => v.state === "shelved",
    suppressed: (v) => v.state === "suppressed",
    out_of_service: (v) => v.state === "out_of_service",
    all: () => true,
  };

  const tbody = document.getElementById("alarm-rows");
  const emptyEl = document.getElementById("alarm-empty");
  const shownEl = document.getElementById("alarm-shown");
  const statusEl = document.getElementById("live-status");
  const seqEl = document.getElementById("live-seq");
  const noticeEl = document.getElementById("alarm-notice");
  const filterState = document.getElementById("filter-state");
  const filterClass = document.getElementById("filter-class");
  const filterArea = document.getElementById("filter-area");
  const selectAll = document.getElementById("select-all");
  const canAcknowledge = root.dataset.canAcknowledge === "1";
  const canShelve = root.dataset.canShelve === "1";
  const header = window.bmsAlarmHeader || { summary() {}, alarm() {}, snapshotDone() {}, stale() {} };
  const follow = window.bmsFollow || { start: () => false, showRole: () => {} };

  const alarms = new Map(); // alarm name -> its entry (value, quality, time, ...)
  const rows = new Map(); // alarm name -> <tr>
  const selected = new Set();
  let live = null;

  // --- filters (kept in the address, so a filtered console can be bookmarked) ------------------------------
  const query = new URLSearchParams(location.search);
  if (query.get("state") && FILTERS[query.get("state")]) filterState.value = query.get("state");
  if (query.get("class")) setSelect(filterClass, query.get("class"));
  if (query.get("area")) setSelect(filterArea, query.get("area"));

  function setSelect(select, value) {
    if (![...select.options].some((option) => option.value === value)) select.add(new Option(value, value));
    select.value = value;
  }

  [filterState, filterClass, filterArea].forEach((select) =>
    select.addEventListener("change", () => {
      const params = new URLSearchParams();
      if (filterState.value !== "attention") params.set("state", filterState.value);
      if (filterClass.value) params.set("class", filterClass.value);
      if (filterArea.value) params.set("area", filterArea.value);
      history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
      refresh();
    }),
  );

  function visible(value) {
    if (value.annunciated === false) return false; // journal-only classes never reach the console
    if (!FILTERS[filterState.value](value)) return false;
    if (filterClass.value && value.class !== filterClass.value) return false;
    if (filterArea.value && value.area !== filterArea.value) return false;
    return true;
  }

  // --- rendering ---------------------------------------------------------------------------------------------
  function formatValue(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "on" : "off";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
    return String(value);
  }

  function utc(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "–";
  }

  function cell(tr, cls, content) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (content !== undefined) td.textContent = content;
    tr.appendChild(td);
    return td;
  }

  function button(cls, label, action, title) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = label;
    b.dataset.action = action;
    if (title) b.title = title;
    return b;
  }

  function makeRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.alarm = name;
    tr.dataset.shownAt = String(Date.now());
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.className = "pick";
    pick.setAttribute("aria-label", "select " + name);
    pick.addEventListener("change", () => {
      if (pick.checked) selected.add(name);
      else selected.delete(name);
      showSelection();
    });
    cell(tr, "pick-cell").appendChild(pick);
    cell(tr, "num priority");
    cell(tr, "class-cell").appendChild(document.createElement("span")).className = "alarm-class";
    cell(tr, "time");
    cell(tr, "name alarm-name", name);
    cell(tr, "name point");
    cell(tr, "area");
    cell(tr, "message");
    cell(tr, "num value");
    const stateCell = cell(tr, "state");
    stateCell.appendChild(document.createElement("span")).className = "alarm-state";
    stateCell.appendChild(document.createElement("small")).className = "flags";
    const actions = cell(tr, "actions");
    if (canAcknowledge) actions.appendChild(button("ack", "Acknowledge…", "acknowledge"));
    if (canShelve) {
      actions.appendChild(button("shelve", "Shelve…", "shelve"));
      actions.appendChild(button("unshelve", "Unshelve…", "unshelve"));
    }
    actions.addEventListener("click", (event) => {
      const target = event.target.closest("button[data-action]");
      if (target) openDialog(target.dataset.action, [name]);
    });
    return tr;
  }

  // Fields at their default are left out of an entry (docs/live-protocol.md): every test below reads a missing
  // one as its default (no area, acknowledgement required, not shelved, not chattering, no inhibit).
  function fillRow(tr, name, entry) {
    const v = entry.value;
    tr.dataset.state = v.state;
    tr.dataset.class = v.class || "";
    tr.dataset.area = v.area || "";
    tr.dataset.priority = String(v.priority);
    tr.className = "alarm st-" + v.state + (v.chattering ? " chattering" : "");
    tr.style.setProperty("--alarm-colour", v.colour || "#757575");
    tr.querySelector(".priority").textContent = v.priority === null ? "–" : String(v.priority);
    tr.querySelector(".alarm-class").textContent = v.class || "–";
    tr.querySelector(".time").textContent = utc(entry.time);
    tr.querySelector(".point").textContent = v.point || "";
    tr.querySelector(".area").textContent = v.area || "";
    tr.querySelector(".message").textContent = v.message || "";
    tr.querySelector(".value").textContent = formatValue(v.value);
    tr.querySelector(".alarm-state").textContent = STATE_LABELS[v.state] || v.state;
    const flags = [];
    if (v.state === "shelved" && v.shelved_until) {
      flags.push(`until ${new Date(v.shelved_until / 1000).toISOString().slice(0, 19).replace("T", " ")}`);
    }
    if (v.state === "shelved" && v.shelved_by) flags.push("by " + v.shelved_by);
    if (v.state === "shelved" && !v.shelved_until) flags.push("until it returns to normal");
    if (v.chattering) flags.push("chattering");
    if (v.ack_required === false) flags.push("no acknowledgement needed");
    if (v.alarm_state && v.alarm_state !== v.state && v.alarm_state !== "normal") {
      flags.push("beneath: " + (STATE_LABELS[v.alarm_state] || v.alarm_state));
    }
    tr.querySelector(".flags").textContent = flags.join(" · ");
    const ack = tr.querySelector("button.ack");
    if (ack) ack.hidden = !UNACKED.has(v.state) && !UNACKED.has(v.alarm_state);
    const shelve = tr.querySelector("button.shelve");
    if (shelve) shelve.hidden = v.state === "shelved" || v.state === "out_of_service";
    const unshelve = tr.querySelector("button.unshelve");
    if (unshelve) unshelve.hidden = v.state !== "shelved";
  }

  // Most urgent first: the smallest priority number, then the newest.
  function compare(a, b) {
    const pa = a[1].value.priority ?? 10000;
    const pb = b[1].value.priority ?? 10000;
    if (pa !== pb) return pa - pb;
    const ta = a[1].time || "";
    const tb = b[1].time || "";
    if (ta !== tb) return ta < tb ? 1 : -1;
    return a[0] < b[0] ? -1 : 1;
  }

  function refresh() {
    const shown = [...alarms].filter(([, entry]) => visible(entry.value)).sort(compare);
    const keep = new Set(shown.map(([name]) => name));
    for (const [name, tr] of rows) {
      if (!keep.has(name)) {
        tr.remove();
        rows.delete(name);
      }
    }
    let previous = null;
    for (const [name, entry] of shown) {
      let tr = rows.get(name);
      if (!tr) {
        tr = makeRow(name);
        rows.set(name, tr);
      }
      fillRow(tr, name, entry);
      tr.querySelector("input.pick").checked = selected.has(name);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== tr) tbody.insertBefore(tr, wanted);
      previous = tr;
    }
    for (const name of [...selected]) if (!keep.has(name)) selected.delete(name);
    emptyEl.hidden = shown.length > 0;
    shownEl.textContent = `${shown.length} shown of ${alarms.size}`;
    showSelection();
  }

  function showSelection() {
    const count = selected.size;
    document.querySelectorAll(".bulk").forEach((b) => {
      b.disabled = count === 0;
    });
    selectAll.checked = count > 0 && count === rows.size;
    selectAll.indeterminate = count > 0 && count < rows.size;
  }

  selectAll.addEventListener("change", () => {
    selected.clear();
    if (selectAll.checked) rows.forEach((_tr, name) => selected.add(name));
    refresh();
  });

  // --- the live stream ---------------------------------------------------------------------------------------
  function apply(entries, replace) {
    if (replace && !Object.prototype.hasOwnProperty.call(entries, SUMMARY)) header.summary(null); // no alarms
    if (replace) {
      for (const name of alarms.keys()) {
        if (!Object.prototype.hasOwnProperty.call(entries, PREFIX + name)) header.alarm(name, null);
      }
      alarms.clear();
    }
    for (const [key, entry] of Object.entries(entries)) {
      if (key === SUMMARY) {
        header.summary(entry ? entry.value : null);
      } else if (key.startsWith(PREFIX)) {
        const name = key.slice(PREFIX.length);
        if (entry && entry.value) {
          alarms.set(name, entry);
          header.alarm(name, entry.value);
        } else {
          alarms.delete(name);
          header.alarm(name, null);
        }
      }
    }
    if (replace) header.snapshotDone();
    refresh();
  }

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = "conn " + cls;
  }

  live = window.bmsLive.open({
    family: "alarms",
    snapshot(entries, seq) {
      apply(entries, true);
      seqEl.textContent = String(seq);
    },
    delta(entries, seq) {
      apply(entries, false);
      seqEl.textContent = String(seq);
    },
    status(text, cls) {
      setStatus(text, cls);
    },
    role(msg) {
      follow.showRole(msg);
      if (msg.role !== "active" && follow.start()) {
        setStatus("this node is no longer active; moving to the active node…", "conn-warn");
      }
    },
    closed(event) {
      seqEl.textContent = "–";
      header.stale();
      if (event.code !== 4503 && follow.start()) setStatus("connection lost; looking for the active node…", "conn-bad");
    },
  });

  // --- actions -----------------------------------------------------------------------------------------------
  const dialog = document.getElementById("alarm-dialog");
  const form = document.getElementById("alarm-form");
  const titleEl = document.getElementById("alarm-dialog-title");
  const namesEl = document.getElementById("alarm-dialog-names");
  const durationLabel = document.getElementById("shelve-duration-label");
  const durationSelect = document.getElementById("shelve-duration");
  const commentInput = document.getElementById("alarm-comment");
  const commentHint = document.getElementById("alarm-comment-hint");
  const resultEl = document.getElementById("alarm-result");
  const submitButton = document.getElementById("alarm-submit");
  const VERBS = { acknowledge: "Acknowledge", shelve: "Shelve", unshelve: "Unshelve" };
  const PAST = { acknowledge: "Acknowledged", shelve: "Shelved", unshelve: "Unshelved" };
  let pending = null;

  document.querySelectorAll(".bulk").forEach((b) =>
    b.addEventListener("click", () => {
      if (selected.size) openDialog(b.dataset.action, [...selected]);
    }),
  );
  document.getElementById("alarm-cancel").addEventListener("click", () => dialog.close());

  function openDialog(action, names) {
    pending = { action: action, names: names };
    const what = names.length === 1 ? names[0] : `${names.length} alarms`;
    titleEl.textContent = `${VERBS[action]} ${what}`;
    namesEl.replaceChildren(
      ...names.slice(0, 20).map((name) => {
        const li = document.createElement("li");
        const entry = alarms.get(name);
        li.textContent = entry && entry.value.message ? `${name}: ${entry.value.message}` : name;
        return li;
      }),
    );
    if (names.length > 20) namesEl.appendChild(document.createElement("li")).textContent = `… and ${names.length - 20} more`;
    durationLabel.hidden = action !== "shelve";
    commentInput.value = "";
    commentInput.required = action === "shelve";
    commentHint.textContent = action === "shelve" ? "required: why is it shelved?" : "optional";
    submitButton.textContent = VERBS[action];
    submitButton.disabled = false;
    resultEl.textContent = "";
    resultEl.className = "";
    delete resultEl.dataset.outcome;
    dialog.showModal();
    commentInput.focus();
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function showResult(text, cls, outcome) {
    resultEl.textContent = text;
    resultEl.className = cls;
    resultEl.dataset.outcome = outcome;
  }

  // The answer's lists: "done" and "unchanged" name alarms, "refused" maps each refused alarm to the reason.
  function names(list) {
    return (list || []).map(String);
  }

  function reasons(refused) {
    return Object.entries(refused || {}).map(([name, reason]) => `${name}: ${reason}`);
  }

  function describe(action, body) {
    const parts = [];
    const done = names(body.done);
    const unchanged = names(body.unchanged);
    const refused = reasons(body.refused);
    if (done.length) parts.push(`${PAST[action]}: ${done.join(", ")}.`);
    if (unchanged.length) parts.push(`Nothing to do for: ${unchanged.join(", ")}.`);
    if (refused.length) parts.push(`Refused: ${refused.join("; ")}.`);
    return { text: parts.join(" ") || "Nothing was changed.", ok: refused.length === 0 };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!pending) return;
    const payload = { action: pending.action, alarms: pending.names, comment: commentInput.value.trim() };
    if (pending.action === "shelve") {
      if (!payload.comment) {
        showResult("Give a reason for shelving.", "error", "invalid");
        return;
      }
      if (durationSelect.value === "until_normal") {
        // until it returns, but never past the site's longest shelving (the engine caps at the given seconds)
        payload.until_normal = true;
        payload.seconds = Number(durationSelect.dataset.maxSeconds);
      } else {
        payload.seconds = Number(durationSelect.value);
      }
    }
    submitButton.disabled = true;
    showResult("Sending…", "", "sending");
    try {
      const response = await fetch(root.dataset.actionUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(payload),
        credentials: "same-origin",
      });
      const type = response.headers.get("Content-Type") || "";
      if (!type.includes("application/json")) {
        // The read-only guard's page (a standby, or a node that does not know its role): show its explanation.
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const message = page.getElementById("refused-message");
        const text = message ? message.textContent.trim() : `the server answered ${response.status}`;
        showResult(`Refused: ${text} Nothing was changed.`, "error", response.status === 503 ? "refused-standby" : "error");
        return;
      }
      const body = await response.json();
      if (!response.ok) {
        showResult(body.message || `the server answered ${response.status}`, "error", body.error || "error");
        return;
      }
      const summary = describe(pending.action, body);
      for (const name of names(body.done)) selected.delete(name);
      if (summary.ok) {
        dialog.close();
        noticeEl.textContent = summary.text;
        noticeEl.className = "ok";
        noticeEl.dataset.outcome = "done";
        refresh();
      } else {
        showResult(summary.text, "error", "partly-refused");
      }
    } catch (err) {
      showResult("Could not reach the server: " + err, "error", "unreachable");
    } finally {
      submitButton.disabled = false;
    }
  });
})();
