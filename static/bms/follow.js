// Following the active node of the pair (no DNS tricks): every page knows both nodes (data attributes on
// <body>). A page served while its node was active, whose node stops answering or stops being active, asks
// both nodes' /healthz every 200 ms and moves to the one that is active, logged in with a follow token that
// it fetched from its own node beforehand (signed with the pair's shared secret). A page served by a
// standby stays where it is (read-only, with the banner).
(function () {
  "use strict";
  const data = document.body.dataset;
  const POLL_MS = 200;
  const PROBE_TIMEOUT_MS = 600;
  const TOKEN_REFRESH_MS = 10 * 60 * 1000;
  const pair = data.pair === "1";
  const servedActive = data.role === "active";
  const partnerUrl = (data.partnerUrl || "").replace(/\/$/, "");
  let token = null;
  let following = false;
  let backHere = [];

  async function refreshToken() {
    if (data.follow !== "1") return;
    try {
      const response = await fetch(data.followTokenUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) token = (await response.json()).token;
    } catch (err) {
      // keep the previous token; it is valid for hours
    }
  }

  async function probe(base) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
    try {
      const response = await fetch(base + "/healthz", { mode: "cors", cache: "no-store", signal: controller.signal });
      return await response.json();
    } catch (err) {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  function moveTo(base) {
    const next = location.pathname + location.search + location.hash;
    const target = token
      ? base + "/redundancy/follow?token=" + encodeURIComponent(token) + "&next=" + encodeURIComponent(next)
      : base + next;
    window.bmsFollow.movedTo = base;
    location.assign(target);
  }

  async function poll() {
    if (!following) return;
    const [here, there] = await Promise.all([probe(location.origin), partnerUrl ? probe(partnerUrl) : null]);
    if (here && here.role === "active") {
      following = false;
      const callbacks = backHere;
      backHere = [];
      callbacks.forEach((callback) => callback(here));
      return;
    }
    if (there && there.role === "active" && there.node !== data.node) {
      moveTo((there.active_url || partnerUrl).replace(/\/$/, ""));
      return;
    }
    setTimeout(poll, POLL_MS);
  }

  window.bmsFollow = {
    servedActive: servedActive,
    // The active node may have changed (socket lost, or a role message said this node is no longer active).
    // Returns true if this page is now looking for the active node; onBack runs if this node is active again.
    start(onBack) {
      if (!pair || !servedActive || !partnerUrl) return false;
      if (onBack) backHere.push(onBack);
      if (!following) {
        following = true;
        poll();
      }
      return true;
    },
    get following() {
      return following;
    },
    get hasToken() {
      return token !== null;
    },
    // A role message from this node: keep the banner truthful.
    showRole(msg) {
      const banner = document.getElementById("pair-banner");
      if (!banner || !msg || !msg.role) return;
      banner.className = "pair-banner pair-" + msg.role;
      banner.dataset.role = msg.role;
      const active = msg.active_node ? " The active node is " + msg.active_node + "." : " No active node is known.";
      banner.textContent =
        msg.role === "active"
          ? "Node " + msg.node + " is active (epoch " + msg.epoch + ")."
          : "Read-only: node " + msg.node + " is " + msg.role + " (epoch " + msg.epoch + ")." + active;
    },
  };

  if (pair) {
    refreshToken();
    setInterval(refreshToken, TOKEN_REFRESH_MS);
  }
})();
