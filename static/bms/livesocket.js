// A client of the live websocket (docs/live-protocol.md, keyed form) for pages other than the points page:
// snapshot + deltas with the one-seq rule (a gap asks for a resync), a narrower subscription chosen from the
// first snapshot, reconnection with a growing delay, and a slow retry while the node's channel layer is down.
//
//   const live = window.bmsLive.open({
//     family: "alarms",                           // or: connect to a family of entries (docs/live-protocol.md)
//     select(entries) { return names or null },   // after each connection's first snapshot: what to subscribe to
//     snapshot(entries, seq) {},                  // replace everything held
//     delta(entries, seq) {},                     // apply these (absolute) states
//     status(text, cls, msg) {},                  // connection state for the page ("connected", "conn-ok", ...)
//     role(msg) {},                               // this node's role changed
//     closed(event) {},                           // the socket closed (before the retry is scheduled)
//   });
//   live.send({...}); live.rediscover();
(function () {
  "use strict";

  function open(handlers) {
    const on = Object.assign(
      { family: null, select: () => null, snapshot() {}, delta() {}, status() {}, role() {}, closed() {} },
      handlers,
    );
    let socket = null;
    let seq = null;
    let retryDelay = 500;
    let choosing = true; // the next snapshot is a connection's first (or a rediscovery's): choose the names

    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    function choose(entries) {
      choosing = false;
      const names = on.select(entries);
      if (names !== null && names !== undefined) send({ type: "subscribe", points: names });
    }

    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const query = on.family ? "?family=" + encodeURIComponent(on.family) : "";
      socket = new WebSocket(scheme + location.host + "/ws/live/" + query);
      choosing = !on.family; // a family follows its entries by itself: nothing to choose
      on.status("connecting…", "conn-connecting");
      socket.onopen = () => {
        retryDelay = 500;
        on.status("connected", "conn-ok");
      };
      socket.onmessage = (event) => {
        const msg = JSON.parse(event.data);
        if (msg.type === "snapshot") {
          seq = msg.seq;
          on.snapshot(msg.points, seq);
          if (choosing) choose(msg.points);
        } else if (msg.type === "delta") {
          if (seq === null || msg.from !== seq) {
            seq = null;
            send({ type: "resync" });
            return;
          }
          seq = msg.seq;
          on.delta(msg.points, seq);
        } else if (msg.type === "error") {
          if (msg.code === "unknown_point") {
            // a name chosen from the snapshot is gone (an alarm definition deleted): choose again from all
            rediscover();
            return;
          }
          on.status(msg.message, "conn-warn", msg);
          return;
        } else if (msg.type === "status") {
          on.status(msg.message, "conn-warn", msg);
          return;
        } else if (msg.type === "role") {
          on.role(msg);
          return;
        } else {
          return;
        }
        on.status("connected", "conn-ok");
      };
      socket.onclose = (event) => {
        seq = null;
        on.closed(event);
        if (event.code === 4503) {
          on.status("live updates interrupted (server channel layer down); retrying…", "conn-bad");
          setTimeout(connect, 3000);
          return;
        }
        if (event.code === 4401) {
          on.status("not logged in", "conn-bad");
          return; // a new login reloads the page
        }
        on.status("disconnected, retrying…", "conn-bad");
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 5000);
      };
    }

    // Subscribe to everything once more and choose the names again from that snapshot.
    function rediscover() {
      if (on.family) {
        send({ type: "resync" });
        return;
      }
      choosing = true;
      send({ type: "subscribe", points: null });
    }

    connect();
    return { send: send, rediscover: rediscover };
  }

  window.bmsLive = { open: open };
})();
