// The trend page (/trends/?points=a,b): several points on one uPlot chart.
// History comes from GET /api/v1/trends/ at the resolution the visible range needs (min/max band and the
// average per bucket), fetched again after every zoom (drag across the chart) and pan (the buttons); live
// values come from the websocket (livesocket.js), subscribed to the charted points, and are appended while
// the view reaches "now". "Export CSV" streams GET /api/v1/trends/csv and counts the rows as they arrive.
// For tests and the curious: window.bmsTrend (the plot, the last answer, live values per point).
(function () {
  "use strict";
  const root = document.getElementById("trend");
  if (!root || !window.uPlot) return;
  const names = root.dataset.points.split(",").filter(Boolean);
  const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  const FOLLOW_SLACK_MS = 60 * 1000; // a view ending this close to now follows the live values
  const chartEl = document.getElementById("trend-chart");
  const rangeEl = document.getElementById("trend-range");
  const resolutionEl = document.getElementById("trend-resolution");
  const statusEl = document.getElementById("live-status");
  const progressEl = document.getElementById("trend-export-progress");
  const rows = new Map();
  document.querySelectorAll(".trend-legend tr[data-point]").forEach((tr, index) => {
    rows.set(tr.dataset.point, tr);
    const swatch = tr.querySelector(".swatch");
    Object.assign(swatch.style, {
      display: "inline-block", width: "0.8em", height: "0.8em", marginRight: "0.4em",
      background: COLOURS[index % COLOURS.length],
    });
  });

  // ---- the visible range -----------------------------------------------------------------------------------
  function parseTime(text) {
    if (!text) return null;
    const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z");
    return Number.isNaN(ms) ? null : ms;
  }
  const now = Date.now();
  let viewEnd = parseTime(root.dataset.end) || now;
  let viewStart = parseTime(root.dataset.start) || viewEnd - 86400 * 1000;
  if (viewStart >= viewEnd) viewStart = viewEnd - 86400 * 1000;
  let follow = !root.dataset.end || viewEnd >= now - FOLLOW_SLACK_MS;

  let answer = null; // the API's last answer
  const live = new Map(names.map((name) => [name, []])); // name -> [[seconds, value], ...] since the page opened
  let requestNo = 0;
  let plot = null;
  let firstDrawMs = null;

  function iso(ms) {
    return new Date(ms).toISOString().replace(".000Z", "Z");
  }

  function showRange() {
    const shown = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
    rangeEl.textContent = shown(viewStart) + " – " + shown(viewEnd) + " UTC";
  }

  function describeBucket(seconds) {
    if (!seconds) return "raw samples";
    if (seconds % 86400 === 0) return seconds / 86400 + " d buckets";
    if (seconds % 3600 === 0) return seconds / 3600 + " h buckets";
    if (seconds % 60 === 0) return seconds / 60 + " min buckets";
    return seconds + " s buckets";
  }

  // ---- data for uPlot: one x array, per point avg, min and max -----------------------------------------------
  function build() {
    const xs = new Set();
    const perPoint = names.map((name, index) => {
      const series = answer ? answer.series[index] : null;
      const values = new Map(); // seconds -> [avg, min, max]
      let lastHistory = -Infinity;
      if (series) {
        for (let i = 0; i < series.t.length; i++) {
          const x = series.t[i] / 1000;
          values.set(x, [series.avg[i], series.min[i], series.max[i]]);
          lastHistory = Math.max(lastHistory, x);
        }
      }
      for (const [x, value] of live.get(name)) {
        if (x > lastHistory && x >= viewStart / 1000 && x <= viewEnd / 1000) values.set(x, [value, value, value]);
      }
      values.forEach((_, x) => xs.add(x));
      return values;
    });
    const x = Array.from(xs).sort((a, b) => a - b);
    const data = [x];
    perPoint.forEach((values) => {
      // undefined: this point has nothing at this x (another point has), uPlot joins across it;
      // null: a bucket without a good sample, a gap in the line
      for (let k = 0; k < 3; k++) data.push(x.map((t) => (values.has(t) ? values.get(t)[k] : undefined)));
    });
    return data;
  }

  function makePlot() {
    const series = [{}];
    const bands = [];
    names.forEach((name, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const unit = rows.get(name).dataset.unit;
      const base = series.length;
      series.push({ label: name + (unit ? " (" + unit + ")" : ""), stroke: colour, width: 2, spanGaps: false });
      series.push({ label: name + " min", stroke: colour + "66", width: 1, spanGaps: false });
      series.push({ label: name + " max", stroke: colour + "66", width: 1, spanGaps: false });
      bands.push({ series: [base + 2, base + 1], fill: colour + "22" });
    });
    const width = Math.max(320, chartEl.clientWidth || root.clientWidth || 800);
    plot = new window.uPlot(
      {
        width: width,
        height: 420,
        series: series,
        bands: bands,
        scales: { x: { time: true, range: () => [viewStart / 1000, viewEnd / 1000] } },
        cursor: { drag: { x: true, y: false, setScale: false } },
        legend: { live: true },
        hooks: { setSelect: [zoomToSelection] },
      },
      build(),
      chartEl,
    );
    plot.over.addEventListener("dblclick", () => zoom(2));
  }

  function redraw() {
    if (plot) plot.setData(build());
  }

  // ---- fetching history ----------------------------------------------------------------------------------------
  function maxPoints() {
    const pixels = plot ? plot.bbox.width / (window.devicePixelRatio || 1) : chartEl.clientWidth || 1000;
    return Math.max(100, Math.min(10000, Math.round(pixels)));
  }

  async function load() {
    showRange();
    const mine = ++requestNo;
    const query = new URLSearchParams({
      points: names.join(","), start: iso(viewStart), end: iso(viewEnd), max_points: String(maxPoints()),
    });
    resolutionEl.textContent = "loading…";
    let body;
    try {
      const response = await fetch(root.dataset.api + "?" + query.toString(), {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      body = await response.json();
      if (!response.ok) throw new Error(body.detail || response.statusText);
    } catch (error) {
      if (mine === requestNo) resolutionEl.textContent = "error: " + error.message;
      return;
    }
    if (mine !== requestNo) return; // a newer view was asked for meanwhile
    answer = body;
    resolutionEl.dataset.resolution = body.resolution;
    resolutionEl.dataset.bucketSeconds = String(body.bucket_seconds);
    const marked = body.series.reduce((n, s) => n + s.quality.filter((q) => q !== "good").length, 0);
    resolutionEl.textContent = body.resolution + " (" + describeBucket(body.bucket_seconds) + ")" +
      (marked ? " · " + marked + " bucket(s) with non-good samples" : "");
    if (!plot) {
      makePlot();
      firstDrawMs = performance.now(); // since navigation start
    } else redraw();
    root.dataset.loaded = String(requestNo);
  }

  function setView(start, end) {
    const latest = Date.now();
    if (end > latest) {
      start -= end - latest;
      end = latest;
    }
    viewStart = Math.round(start);
    viewEnd = Math.round(end);
    follow = viewEnd >= latest - FOLLOW_SLACK_MS;
    load();
  }

  function zoomToSelection(u) {
    const select = u.select;
    if (select.width < 3) return;
    const from = u.posToVal(select.left, "x") * 1000;
    const to = u.posToVal(select.left + select.width, "x") * 1000;
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (to - from >= 1000) setView(from, to);
  }

  function zoom(factor) {
    const middle = (viewStart + viewEnd) / 2;
    const half = ((viewEnd - viewStart) * factor) / 2;
    setView(middle - half, middle + half);
  }

  function pan(fraction) {
    const shift = (viewEnd - viewStart) * fraction;
    setView(viewStart + shift, viewEnd + shift);
  }

  root.querySelectorAll("button[data-range]").forEach((button) => {
    button.addEventListener("click", () => {
      const latest = Date.now();
      setView(latest - Number(button.dataset.range) * 1000, latest);
    });
  });
  document.getElementById("trend-earlier").addEventListener("click", () => pan(-0.5));
  document.getElementById("trend-later").addEventListener("click", () => pan(0.5));
  document.getElementById("trend-zoom-out").addEventListener("click", () => zoom(2));
  document.getElementById("trend-now").addEventListener("click", () => {
    const span = viewEnd - viewStart;
    const latest = Date.now();
    setView(latest - span, latest);
  });

  // ---- the CSV export, streamed, with the rows counted as they arrive -----------------------------------------
  document.getElementById("trend-export").addEventListener("click", async () => {
    const query = new URLSearchParams({ points: names.join(","), start: iso(viewStart), end: iso(viewEnd) });
    progressEl.className = "";
    progressEl.textContent = "exporting…";
    try {
      const response = await fetch(root.dataset.export + "?" + query.toString(), { credentials: "same-origin" });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.detail || response.statusText);
      }
      const reader = response.body.getReader();
      const parts = [];
      let lines = 0;
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        bytes += value.length;
        for (let i = 0; i < value.length; i++) if (value[i] === 10) lines++;
        progressEl.textContent = Math.max(lines - 1, 0).toLocaleString() + " rows (" + Math.round(bytes / 1024) + " KiB)…";
      }
      const rowsExported = Math.max(lines - 1, 0);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob(parts, { type: "text/csv" }));
      link.download = "trend-" + iso(viewStart) + "-" + iso(viewEnd) + ".csv";
      document.body.appendChild(link);
      link.click();
      setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 0);
      progressEl.textContent = rowsExported.toLocaleString() + " rows exported";
      progressEl.dataset.rows = String(rowsExported);
      progressEl.className = "ok";
    } catch (error) {
      progressEl.textContent = "export failed: " + error.message;
      progressEl.className = "error";
    }
  });

  // ---- live values -----------------------------------------------------------------------------------------------
  // kind comes from the row (as on the points page): "real" points always show two decimals
  function formatValue(value, kind) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "on" : "off";
    if (typeof value === "number" && (kind === "real" || !Number.isInteger(value))) return value.toFixed(2);
    return String(value);
  }

  function take(entries, fromSnapshot) {
    let appended = false;
    for (const name of names) {
      const state = entries[name];
      if (!state) continue;
      const tr = rows.get(name);
      const cell = tr.querySelector(".live-value");
      cell.textContent = formatValue(state.value, tr.dataset.kind);
      cell.dataset.raw = JSON.stringify(state.value);
      const quality = tr.querySelector(".quality");
      quality.textContent = state.quality.replace("_", " ");
      quality.className = "quality q-" + state.quality;
      tr.querySelector(".time").textContent = state.time ? state.time.replace("T", " ").slice(0, 19) : "–";
      const value = typeof state.value === "boolean" ? Number(state.value) : state.value;
      const stamp = Date.parse(state.changed || state.time || "");
      if (typeof value !== "number" || Number.isNaN(stamp) || state.quality !== "good") continue;
      const points = live.get(name);
      const x = (fromSnapshot ? Math.max(stamp, Date.now() - 1000) : stamp) / 1000;
      if (!points.length || points[points.length - 1][0] < x) {
        points.push([x, value]);
        appended = true;
      }
    }
    if (appended && follow) {
      const latest = Date.now();
      viewStart += latest - viewEnd;
      viewEnd = latest;
      showRange();
      redraw();
    }
  }

  if (window.bmsLive) {
    window.bmsLive.open({
      select: () => names,
      snapshot: (entries) => take(entries, true),
      delta: (entries) => take(entries, false),
      status: (text, cls) => {
        statusEl.textContent = text;
        statusEl.className = "conn " + cls;
      },
    });
  }

  window.bmsTrend = {
    get plot() { return plot; },
    get answer() { return answer; },
    get firstDrawMs() { return firstDrawMs; },
    live: live,
    view: () => ({ start: viewStart, end: viewEnd, follow: follow }),
  };
  load();
})();
