// The alarm part of every page's header: unacknowledged alarms by class (the live entry "alarms:summary"),
// and the sound for new high-priority alarms with its mute button.
//
// Pages with a live socket of their own (the points page, the alarm console: <body data-live-page="1">) feed
// this script through window.bmsAlarmHeader: summary(value) with the summary entry, and alarm(name, value)
// with each alarm entry they receive (then a new alarm is recognised exactly: an alarm that becomes
// active_unacked). Other pages get a small socket of their own, subscribed to the summary only; there a new
// alarm is an unacknowledged count that grows in a class at or above the sound priority.
(function () {
  "use strict";
  const countsEl = document.getElementById("alarm-counts");
  if (!countsEl) return; // not logged in: no header count
  const badgesEl = countsEl.querySelector(".alarm-badges");
  const muteButton = document.getElementById("alarm-mute");
  const soundPriority = Number(document.body.dataset.alarmSoundPriority || "300");
  const STORE_KEY = "bms.alarmSound";
  const UNACKED = new Set(["active_unacked", "rtn_unacked"]);

  let previous = null; // the last summary value, to see counts grow
  let feedsEntries = false; // the page sends alarm entries: new alarms are recognised from them
  let primed = false; // the page's first snapshot has been seen: alarms seen from now on are new
  const alarmStates = new Map(); // alarm name -> display state last seen
  let audio = null;

  // --- the counts -------------------------------------------------------------------------------------------
  // summary null: the node's stream has no summary entry, i.e. no alarms are configured
  function renderSummary(summary) {
    if (!summary) {
      countsEl.dataset.total = "0";
      countsEl.classList.remove("has-unacked");
      badgesEl.replaceChildren(text("span", "alarm-none", "none"));
      countsEl.title = "No alarms are configured.";
      return;
    }
    const unacked = summary.unacked || {};
    const active = summary.active || {};
    const total = summary.unacked_total || 0;
    countsEl.dataset.total = String(total);
    countsEl.classList.toggle("has-unacked", total > 0);
    const classes = (summary.classes || []).slice().sort((a, b) => a.priority - b.priority);
    const badges = [];
    for (const cls of classes) {
      const count = unacked[cls.name] || 0;
      if (!count) continue;
      const badge = text("span", "alarm-badge", cls.name + " " + count);
      badge.dataset.class = cls.name;
      badge.dataset.count = String(count);
      badge.title = `${cls.name}: ${count} unacknowledged, ${active[cls.name] || 0} active`;
      badge.style.setProperty("--alarm-colour", cls.colour || "#757575");
      badges.push(badge);
    }
    if (!badges.length) badges.push(text("span", "alarm-none", "none"));
    badgesEl.replaceChildren(...badges);
    countsEl.title = `Unacknowledged alarms: ${total}. Open the alarm console.`;
  }

  function text(tag, cls, content) {
    const el = document.createElement(tag);
    el.className = cls;
    el.textContent = content;
    return el;
  }

  function summary(value) {
    renderSummary(value);
    countsEl.classList.remove("stale");
    if (!feedsEntries && previous && value) {
      const now = value.unacked || {};
      const before = previous.unacked || {};
      for (const cls of value.classes || []) {
        if (cls.priority <= soundPriority && (now[cls.name] || 0) > (before[cls.name] || 0)) {
          chime("class " + cls.name);
          break;
        }
      }
    }
    previous = value;
  }

  // --- new alarms, from the entries the page receives --------------------------------------------------------
  function alarm(name, value) {
    feedsEntries = true;
    const before = alarmStates.get(name);
    if (!value) {
      alarmStates.delete(name);
      return;
    }
    alarmStates.set(name, value.state);
    const fresh = before === undefined ? primed : before !== value.state;
    if (
      fresh &&
      value.state === "active_unacked" &&
      value.annunciated !== false &&
      value.priority !== null &&
      value.priority <= soundPriority
    ) {
      chime(name);
    }
  }

  // The page has applied a snapshot: alarms seen after this one are new when first seen.
  function snapshotDone() {
    primed = true;
  }

  // --- the sound ---------------------------------------------------------------------------------------------
  function isMuted() {
    return localStorage.getItem(STORE_KEY) === "muted";
  }

  function showMute() {
    const muted = isMuted();
    muteButton.setAttribute("aria-pressed", muted ? "true" : "false");
    muteButton.textContent = muted ? "Sound muted" : "Sound on";
    muteButton.classList.toggle("muted", muted);
    muteButton.title = muted
      ? "New high-priority alarms make no sound on this workstation. Click to turn the sound on."
      : "New high-priority alarms sound here. Click to mute.";
  }

  // Browsers let a page play sound only after the user has interacted with it: the audio context is made
  // (or resumed) on the first click or key press.
  function unlockAudio() {
    try {
      if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
    } catch (err) {
      audio = null; // no Web Audio: the visual cue remains
    }
  }

  function beep(at, frequency, length) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + length);
    osc.connect(gain).connect(audio.destination);
    osc.start(at);
    osc.stop(at + length + 0.02);
  }

  function chime(reason) {
    countsEl.classList.remove("ringing");
    void countsEl.offsetWidth; // restart the animation
    countsEl.classList.add("ringing");
    if (isMuted()) {
      muteButton.dataset.silenced = String(Number(muteButton.dataset.silenced || "0") + 1);
      return;
    }
    muteButton.dataset.rang = String(Number(muteButton.dataset.rang || "0") + 1);
    muteButton.dataset.last = reason;
    if (audio && audio.state === "running") {
      const now = audio.currentTime;
      [0, 0.3, 0.6].forEach((offset, i) => beep(now + offset, i % 2 ? 660 : 880, 0.22));
    }
  }

  muteButton.addEventListener("click", () => {
    localStorage.setItem(STORE_KEY, isMuted() ? "on" : "muted");
    showMute();
  });
  window.addEventListener("storage", (event) => {
    if (event.key === STORE_KEY) showMute(); // muted in another tab of this browser
  });
  document.addEventListener("pointerdown", unlockAudio, { capture: true });
  document.addEventListener("keydown", unlockAudio, { capture: true });
  showMute();

  // The live connection that feeds the counts is down: they may be out of date.
  function stale() {
    countsEl.classList.add("stale");
    countsEl.title = "The live connection is down: these counts may be out of date.";
  }

  window.bmsAlarmHeader = { summary: summary, alarm: alarm, snapshotDone: snapshotDone, stale: stale };

  // --- a socket of its own on pages without one --------------------------------------------------------------
  if (document.body.dataset.livePage === "1" || !window.bmsLive) return;
  window.bmsLive.open({
    family: "alarm-summary",
    snapshot(entries) {
      const entry = entries["alarms:summary"];
      summary(entry ? entry.value : null);
    },
    delta(entries) {
      const entry = entries["alarms:summary"];
      if (entry) summary(entry.value);
    },
    closed: stale,
  });
})();
