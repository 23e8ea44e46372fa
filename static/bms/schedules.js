// The schedule pages: the iCalendar import on the list, and the editor (week grid, exceptions, targets, next
// transitions). Both are clients of the REST API (/api/v1/schedules/, /api/v1/calendars/): the server's models check
// everything, and their refusals are shown next to the field they name (docs/api.md, "Errors"). The transitions are
// computed by the server; what the engine holds for the schedule (image entry "schedule:<name>") comes over the
// websocket when the engine runs it.
(function () {
  "use strict";

  const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
  // the fields each kind of exception uses (bms/schedules/models.py ENTRY_FIELDS); the others are sent empty
  const KIND_FIELDS = {
    date: ["date"],
    range: ["start_date", "end_date"],
    week_and_day: ["month", "week_of_month", "day_of_week"],
    date_pattern: ["year", "month", "day", "day_of_week"],
    calendar: ["calendar"],
  };
  const DAY_FIELDS = ["date", "start_date", "end_date", "year", "month", "day", "week_of_month", "day_of_week", "calendar"];

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // One API call; resolves to {ok, status, body} (body null when the answer is not JSON), never throws for HTTP errors.
  async function api(method, url, payload) {
    const options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } };
    if (payload !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(payload);
    }
    const response = await fetch(url, options);
    let body = null;
    if (response.status !== 204) {
      try {
        body = await response.json();
      } catch (err) {
        body = null;
      }
    }
    return { ok: response.ok, status: response.status, body: body };
  }

  function problem(result) {
    if (result.body && result.body.detail) return result.body.detail;
    return `The server answered ${result.status}.`;
  }

  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  function formatValue(value) {
    if (value === null || value === undefined) return "none (relinquish)";
    if (value === true) return "on";
    if (value === false) return "off";
    return String(value);
  }

  // ---- the list: iCalendar import ---------------------------------------------------------------------------------

  const importForm = document.getElementById("calendar-import");
  if (importForm) {
    const result = document.getElementById("import-result");
    importForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = document.getElementById("import-file").files[0];
      if (!file) {
        result.textContent = "Choose an .ics file.";
        result.className = "error";
        return;
      }
      result.textContent = "Importing…";
      result.className = "";
      const payload = {
        ical: await file.text(),
        name: document.getElementById("import-name").value.trim(),
        replace: document.getElementById("import-replace").checked,
      };
      // a replaced calendar keeps its site; a new one gets the site chosen ("": shared)
      if (!payload.replace) payload.site = document.getElementById("import-site").value || null;
      try {
        const answer = await api("POST", importForm.dataset.api, payload);
        if (answer.ok) {
          const body = answer.body;
          result.textContent = `Calendar ${body.name} ${body.created ? "created" : "replaced"}: ${body.entries} entries` +
            (body.skipped ? `, ${body.skipped} events skipped` : "") + ". Reload the page to see it.";
          result.className = "ok";
        } else {
          const listed = answer.body && answer.body.fields && answer.body.fields.ical;
          result.textContent = Array.isArray(listed) ? listed.join(" · ") : problem(answer);
          result.className = "error";
        }
      } catch (err) {
        result.textContent = "Could not reach the server: " + err;
        result.className = "error";
      }
    });
  }

  // ---- the editor -------------------------------------------------------------------------------------------------

  const root = document.getElementById("schedule-editor");
  if (!root) return;
  const choices = JSON.parse(document.getElementById("schedule-choices").textContent);
  const canEdit = root.dataset.canEdit === "1";
  const listApi = root.dataset.listApi;
  let scheduleId = root.dataset.id ? Number(root.dataset.id) : null;
  let schedule = null;
  const form = document.getElementById("schedule-form");
  const statusEl = document.getElementById("schedule-status");
  const fields = {};
  form.querySelectorAll("[data-field]").forEach((node) => {
    fields[node.dataset.field] = node;
  });

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = cls || "";
  }

  function valueType() {
    return fields.value_type.value;
  }

  // The schedule's site: its targets are points of it, its calendars of it or shared (bms/schedules/models.py).
  function siteName() {
    return fields.site.value;
  }

  function defaultSite() {
    const names = choices.sites.map((site) => site.name);
    return names.includes("main") ? "main" : names[0] || "";
  }

  // A value editor for the schedule's type: on/off/none for bool, a number (empty: none) otherwise.
  function valueInput(value) {
    if (valueType() === "bool") {
      const select = el("select", { class: "tv-value", "aria-label": "value" }, [
        el("option", { value: "", text: "none" }),
        el("option", { value: "true", text: "on" }),
        el("option", { value: "false", text: "off" }),
      ]);
      select.value = value === true ? "true" : value === false ? "false" : "";
      return select;
    }
    const input = el("input", { class: "tv-value", inputmode: "decimal", size: "6", "aria-label": "value", placeholder: "none" });
    input.value = value === null || value === undefined ? "" : String(value);
    return input;
  }

  // What an editor holds: null when empty; a number when it reads as one, else the text (the server names it).
  function readValue(node) {
    const text = node.value.trim();
    if (text === "") return null;
    if (node.tagName === "SELECT") return text === "true";
    const number = Number(text.replace(",", "."));
    return Number.isFinite(number) ? number : text;
  }

  function tvRow(entry) {
    // minutes by default; an entry saved with seconds keeps them (the input shows what its value has)
    const seconds = entry && /^\d\d:\d\d:\d\d$/.test(entry.time);
    const time = el("input", { type: "time", step: seconds ? "1" : null, class: "tv-time", "aria-label": "time", required: true });
    time.value = entry ? entry.time : "";
    const remove = el("button", { type: "button", class: "tv-remove edit-only", title: "remove", text: "×" });
    remove.addEventListener("click", () => row.remove());
    const row = el("div", { class: "tv-row" }, [time, valueInput(entry ? entry.value : null), remove]);
    return row;
  }

  // A list of time/values with an "Add" button (a weekday, or an exception's entries).
  function tvList(entries, label) {
    const rows = el("div", { class: "tv-rows" }, (entries || []).map(tvRow));
    const add = el("button", { type: "button", class: "tv-add edit-only", text: "Add", "aria-label": `add a time to ${label}` });
    add.addEventListener("click", () => {
      const row = tvRow(null);
      rows.append(row);
      row.querySelector(".tv-time").focus();
    });
    return el("div", { class: "tv-list" }, [rows, add]);
  }

  function readTvList(list) {
    return [...list.querySelectorAll(".tv-row")].map((row) => ({
      time: row.querySelector(".tv-time").value,
      value: readValue(row.querySelector(".tv-value")),
    }));
  }

  function renderWeek(weekly) {
    const grid = document.getElementById("week-grid");
    grid.replaceChildren(
      ...WEEKDAYS.map((day) =>
        el("div", { class: "week-day", "data-day": day }, [
          el("h4", { text: day[0].toUpperCase() + day.slice(1) }),
          tvList((weekly || {})[day], day),
        ]),
      ),
    );
  }

  function readWeek() {
    const weekly = {};
    document.querySelectorAll("#week-grid .week-day").forEach((column) => {
      const entries = readTvList(column.querySelector(".tv-list"));
      if (entries.length) weekly[column.dataset.day] = entries;
    });
    return weekly;
  }

  function select(name, options, value, blank) {
    const node = el("select", { "data-name": name }, [
      blank === undefined ? null : el("option", { value: "", text: blank }),
      ...options.map(([optionValue, label]) => el("option", { value: String(optionValue), text: label })),
    ]);
    node.value = value === null || value === undefined ? "" : String(value);
    return node;
  }

  function labelled(text, control, name) {
    return el("label", { class: "ex-field", "data-for": name }, [text + " ", control]);
  }

  function exceptionBox(exception) {
    const ex = exception || { kind: "date", event_priority: 16, time_values: [{ time: "00:00", value: null }] };
    const kind = select("kind", choices.entry_kinds, ex.kind);
    const calendars = choices.calendars
      .filter((name) => name === ex.calendar || [null, siteName()].includes(choices.calendar_sites[name]))
      .map((name) => [name, choices.calendar_sites[name] === null ? `${name} (shared)` : name]);
    const dateInput = (name) => {
      const input = el("input", { type: "date", "data-name": name });
      input.value = ex[name] || "";
      return input;
    };
    const year = el("input", { type: "number", min: "1900", max: "2154", "data-name": "year", placeholder: "every year" });
    year.value = ex.year || "";
    const description = el("input", { "data-name": "description", maxlength: "255" });
    description.value = ex.description || "";
    const parts = [
      labelled("Days", kind, "kind"),
      labelled("Date", dateInput("date"), "date"),
      labelled("From", dateInput("start_date"), "start_date"),
      labelled("To", dateInput("end_date"), "end_date"),
      labelled("Year", year, "year"),
      labelled("Month", select("month", choices.months, ex.month, "every month"), "month"),
      labelled("Week", select("week_of_month", choices.weeks, ex.week_of_month, "every week"), "week_of_month"),
      labelled("Day", select("day", choices.days, ex.day, "every day"), "day"),
      labelled("Weekday", select("day_of_week", choices.weekdays, ex.day_of_week, "any weekday"), "day_of_week"),
      labelled("Calendar", select("calendar", calendars, ex.calendar, "choose…"), "calendar"),
      labelled("Event priority", select("event_priority", choices.priorities.map((p) => [p, String(p)]), ex.event_priority), "event_priority"),
      labelled("Description", description, "description"),
    ];
    const remove = el("button", { type: "button", class: "edit-only", text: "Remove exception" });
    const box = el("fieldset", { class: "exception", "data-id": ex.id === undefined ? "" : String(ex.id) }, [
      el("legend", { text: ex.days ? `Exception: ${ex.days}` : "New exception" }),
      el("div", { class: "ex-days" }, parts),
      el("div", { class: "ex-values" }, [el("span", { class: "hint", text: "Entries: " }), tvList(ex.time_values, "the exception")]),
      el("p", { class: "field-error ex-error" }),
      remove,
    ]);
    remove.addEventListener("click", () => box.remove());
    const showFields = () => {
      const used = KIND_FIELDS[kind.value] || [];
      box.querySelectorAll(".ex-field").forEach((label) => {
        const name = label.dataset.for;
        if (DAY_FIELDS.includes(name)) label.hidden = !used.includes(name);
      });
    };
    kind.addEventListener("change", showFields);
    showFields();
    return box;
  }

  function readException(box) {
    const get = (name) => box.querySelector(`[data-name="${name}"]`).value;
    const kind = get("kind");
    const used = KIND_FIELDS[kind] || [];
    const data = { kind: kind, event_priority: Number(get("event_priority")), description: get("description") };
    if (box.dataset.id) data.id = Number(box.dataset.id);
    for (const name of DAY_FIELDS) {
      const raw = get(name);
      if (!used.includes(name) || raw === "") data[name] = null;
      else if (["date", "start_date", "end_date", "calendar"].includes(name)) data[name] = raw;
      else data[name] = Number(raw);
    }
    data.time_values = readTvList(box.querySelector(".tv-list"));
    return data;
  }

  function targetRow(target) {
    // the site's points; a point already chosen stays listed, so a site changed under it is named by the server
    const options = choices.points
      .filter((p) => p.site === siteName() || (target && p.name === target.point))
      .map((p) => [p.name, `${p.name} (${p.device}${p.unit ? ", " + p.unit : ""})`]);
    const point = select("point", options, target ? target.point : "", "choose a point…");
    const priority = select("priority", choices.priorities.map((p) => [p, String(p)]), target ? target.priority : 16);
    const remove = el("button", { type: "button", class: "edit-only", text: "Remove" });
    const row = el("tr", { class: "target" }, [
      el("td", {}, [point]),
      el("td", {}, [priority]),
      el("td", {}, [remove, el("span", { class: "field-error target-error" })]),
    ]);
    remove.addEventListener("click", () => row.remove());
    return row;
  }

  function render(data) {
    schedule = data;
    for (const name of ["name", "description", "time_zone", "effective_from", "effective_to"]) {
      fields[name].value = data[name] || "";
    }
    fields.value_type.value = data.value_type;
    fields.site.value = data.site || defaultSite();
    fields.enabled.checked = data.enabled;
    renderValueFields(data);
    document.getElementById("exceptions").replaceChildren(...(data.exceptions || []).map(exceptionBox));
    document.querySelector("#targets tbody").replaceChildren(...(data.targets || []).map(targetRow));
    lockIfReadOnly();
  }

  // The value editors follow the type: re-made (keeping what reads the same) when it changes.
  function renderValueFields(data) {
    fields.default_value.replaceChildren(valueInput(data.default_value));
    renderWeek(data.weekly);
  }

  fields.value_type.addEventListener("change", () => {
    const draft = collect();
    renderValueFields(draft);
    document.getElementById("exceptions").replaceChildren(...draft.exceptions.map(exceptionBox));
  });

  // another site offers other points and calendars
  fields.site.addEventListener("change", () => {
    const draft = collect();
    document.getElementById("exceptions").replaceChildren(...draft.exceptions.map(exceptionBox));
    document.querySelector("#targets tbody").replaceChildren(...draft.targets.map(targetRow));
  });

  function collect() {
    return {
      name: fields.name.value.trim(),
      description: fields.description.value,
      value_type: valueType(),
      default_value: readValue(fields.default_value.querySelector(".tv-value")),
      time_zone: fields.time_zone.value.trim(),
      site: siteName(),
      effective_from: fields.effective_from.value || null,
      effective_to: fields.effective_to.value || null,
      enabled: fields.enabled.checked,
      weekly: readWeek(),
      exceptions: [...document.querySelectorAll("#exceptions .exception")].map(readException),
      targets: [...document.querySelectorAll("#targets tr.target")].map((row) => ({
        point: row.querySelector('[data-name="point"]').value,
        priority: Number(row.querySelector('[data-name="priority"]').value),
      })),
    };
  }

  function lockIfReadOnly() {
    if (canEdit) return;
    form.querySelectorAll("input, select, button").forEach((node) => {
      node.disabled = true;
    });
    document.querySelectorAll(".edit-only").forEach((node) => {
      node.hidden = true;
    });
  }

  // ---- errors next to their fields ----

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach((node) => {
      node.textContent = "";
    });
    form.querySelectorAll(".has-error").forEach((node) => node.classList.remove("has-error"));
  }

  function flatten(messages, prefix) {
    if (Array.isArray(messages)) return messages.map((text) => (prefix ? `${prefix}: ${text}` : String(text)));
    if (messages && typeof messages === "object") {
      return Object.entries(messages).flatMap(([key, inner]) =>
        flatten(inner, key === "non_field_errors" ? prefix : prefix ? `${prefix}.${key}` : key),
      );
    }
    return messages ? [String(messages)] : [];
  }

  function errorSlot(name) {
    let slot = form.querySelector(`[data-error-for="${name}"]`);
    if (!slot && fields[name]) {
      slot = el("span", { class: "field-error", "data-error-for": name });
      fields[name].closest("label").append(slot);
    }
    return slot || form.querySelector('[data-error-for="non_field_errors"]');
  }

  function showErrors(found) {
    for (const [name, messages] of Object.entries(found || {})) {
      if (name === "exceptions" || name === "targets") {
        const items = name === "exceptions"
          ? [...document.querySelectorAll("#exceptions .exception")]
          : [...document.querySelectorAll("#targets tr.target")];
        if (Array.isArray(messages)) {
          errorSlot(name).textContent = messages.join(" ");
          continue;
        }
        for (const [index, inner] of Object.entries(messages)) {
          const item = items[Number(index)];
          if (!item) continue;
          item.classList.add("has-error");
          item.querySelector(".field-error").textContent = flatten(inner, "").join(" · ");
        }
        continue;
      }
      const slot = errorSlot(name);
      slot.textContent = flatten(messages, slot.dataset.errorFor === name ? "" : name).join(" · ");
      if (fields[name]) fields[name].classList.add("has-error");
    }
  }

  // ---- loading, saving, deleting ----

  async function load() {
    if (scheduleId === null) {
      render({
        name: "", description: "", value_type: "bool", default_value: null, time_zone: choices.site_time_zone, site: defaultSite(),
        effective_from: null, effective_to: null, enabled: true, weekly: {}, exceptions: [], targets: [],
      });
      return;
    }
    const answer = await api("GET", `${listApi}${scheduleId}/`);
    if (!answer.ok) {
      setStatus(problem(answer), "error");
      return;
    }
    render(answer.body);
    loadTransitions();
    watchEngine(answer.body.name);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!canEdit) return;
    clearErrors();
    setStatus("Saving…");
    const payload = collect();
    let answer;
    try {
      answer = scheduleId === null
        ? await api("POST", listApi, payload)
        : await api("PUT", `${listApi}${scheduleId}/`, payload);
    } catch (err) {
      setStatus("Could not reach the server: " + err + ". Nothing was saved.", "error");
      return;
    }
    if (!answer.ok) {
      // the draft stays as typed: nothing is lost, the errors say what to change
      setStatus(`Not saved: ${problem(answer)}`, "error");
      if (answer.body && answer.body.fields) showErrors(answer.body.fields);
      return;
    }
    if (scheduleId === null) {
      location.assign(root.dataset.editUrl.replace(/0\/$/, `${answer.body.id}/`) + "?saved=1");
      return;
    }
    render(answer.body);
    document.getElementById("schedule-title").textContent = `Schedule ${answer.body.name}`;
    setStatus(`Saved at ${new Date().toLocaleTimeString()}.`, "ok");
    loadTransitions();
  });

  const deleteButton = document.getElementById("schedule-delete");
  if (deleteButton) {
    deleteButton.addEventListener("click", async () => {
      if (!window.confirm(`Delete schedule ${schedule.name}? Its targets keep what it wrote last in their slots.`)) return;
      const answer = await api("DELETE", `${listApi}${scheduleId}/`);
      if (answer.ok) location.assign(root.dataset.listUrl);
      else setStatus(`Not deleted: ${problem(answer)}`, "error");
    });
  }

  // ---- the next transitions (server-computed) and the engine's own state ----

  const WEEKDAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

  function localText(iso, localDate) {
    // "2026-03-29T03:00:00+02:00": the instant in the schedule's zone, as the server computed it
    const weekday = WEEKDAY_NAMES[new Date(localDate + "T12:00:00Z").getUTCDay()];
    return `${weekday} ${iso.slice(0, 10)} ${iso.slice(11, 19)} (UTC${iso.slice(19) || "+00:00"})`;
  }

  async function loadTransitions() {
    if (scheduleId === null) return;
    const count = document.getElementById("transition-count").value;
    const answer = await api("GET", `${listApi}${scheduleId}/next-transitions?live=false&count=${count}`);
    const body = document.querySelector("#transition-table tbody");
    const inForce = document.getElementById("in-force");
    if (!answer.ok) {
      inForce.textContent = problem(answer);
      inForce.className = "error";
      return;
    }
    const data = answer.body;
    document.getElementById("transitions").hidden = false;
    document.getElementById("transition-zone").textContent = data.time_zone;
    const now = data.in_force;
    inForce.className = "";
    inForce.textContent = now.active
      ? `In force now: ${formatValue(now.value)}` + (now.source_label ? ` (${now.source_label}` +
        (now.since ? `, since ${now.since.replace("T", " ").slice(0, 19)} UTC)` : ")") : "")
      : "Not active now: outside its effective period, it writes nothing.";
    body.replaceChildren(
      ...data.transitions.map((t) =>
        el("tr", { "data-identity": t.identity }, [
          el("td", { class: "local", text: localText(t.local, t.local_date) }),
          el("td", { class: "utc", text: t.at.replace("T", " ").replace("Z", "") }),
          el("td", { class: "num value", text: formatValue(t.value) }),
          el("td", { class: "source", text: t.source_label }),
        ]),
      ),
    );
    if (!data.transitions.length) body.append(el("tr", {}, [el("td", { colspan: "4", text: "No transition within the next 800 days." })]));
  }
  document.getElementById("transition-count").addEventListener("change", loadTransitions);

  function watchEngine(name) {
    if (!window.bmsLive) return;
    const entryName = "schedule:" + name;
    const shown = document.getElementById("engine-value");
    const show = (entry) => {
      if (!entry) {
        shown.textContent = "does not run this schedule (yet): the times above are computed from its definition";
        return;
      }
      // the entry of bms/schedules/engine.py: active, value, occurrence (in force), done (last carried out),
      // next_us / next_value; anything else is shown as it comes
      const value = entry.value;
      const parts = [];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        if (value.active === false) parts.push("not active (outside its effective period)");
        else if ("value" in value) parts.push(`value ${formatValue(value.value)}`);
        if (value.occurrence) parts.push(`set by ${value.occurrence}`);
        if (value.done && value.done !== value.occurrence) parts.push(`last carried out ${value.done}`);
        if (value.next_us) {
          const next = new Date(value.next_us / 1000).toISOString().replace("T", " ").slice(0, 19);
          parts.push(`next ${formatValue(value.next_value)} at ${next} UTC`);
        }
        if (!parts.length) parts.push(JSON.stringify(value));
      } else {
        parts.push(`value ${formatValue(value)}`);
      }
      shown.textContent = parts.join(", ") + ` · ${entry.quality}` + (entry.time ? ` · ${entry.time.replace("T", " ").slice(0, 19)} UTC` : "");
    };
    let present = false;
    window.bmsLive.open({
      select(entries) {
        return Object.prototype.hasOwnProperty.call(entries, entryName) ? [entryName] : null;
      },
      snapshot(entries) {
        present = Object.prototype.hasOwnProperty.call(entries, entryName);
        show(present ? entries[entryName] : null);
      },
      delta(entries) {
        if (Object.prototype.hasOwnProperty.call(entries, entryName)) show(entries[entryName]);
      },
      status(text, cls) {
        if (cls === "conn-bad") shown.textContent = `live connection: ${text}`;
      },
    });
  }

  document.getElementById("exception-add").addEventListener("click", () => {
    document.getElementById("exceptions").append(exceptionBox(null));
  });
  document.getElementById("target-add").addEventListener("click", () => {
    document.querySelector("#targets tbody").append(targetRow(null));
  });
  if (new URLSearchParams(location.search).get("saved")) setStatus("Saved.", "ok");
  load().catch((err) => setStatus("Could not load the schedule: " + err, "error"));
})();
