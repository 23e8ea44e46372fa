"""Channel-layer names and message types shared by the engine and the web processes.

The engine's own channel is named per node (``settings.BMS_ENGINE_CHANNEL``):
channels_redis prefixes group names but not named channels, so a fixed name
would let two nodes sharing one Redis answer each other's requests.

The channel layer carries live data (at-most-once, healed by sequence
numbers and snapshots) and wake-up hints. It never carries the only copy of
a command: commands live in the database.
"""

LIVE_GROUP = "live"

# to the engine
SNAPSHOT_REQUEST = "engine.snapshot"  # {"reply_to": channel}
COMMANDS_PENDING = "engine.commands"  # wake-up: new commands are in the database
# an operator's alarm action: {"reply_to", "action", "alarms", "user", "comment", "seconds", "until_normal"}
ALARM_ACTION = "engine.alarm_action"
ALARM_RESULT = "engine.alarm_result"  # reply: {"done", "unchanged", "refused"} or {"error", "detail"}

# from the engine; "points" maps a point name to its live row (None in a delta: the point was removed)
LIVE_DELTA = "live.delta"  # group message: {"from", "seq", "points": {name: row | None}}
LIVE_SNAPSHOT = "live.snapshot"  # reply: {"seq", "points": {name: row}}
LIVE_RESET = "live.reset"  # group message: the image was replaced (replication); ask for a snapshot
LIVE_ROLE = "live.role"  # group message: {"node", "role", "epoch", "active_node", "active_url", "partner_url"}

#: a live row is a list: [value, quality, time_us, changed_us, seq]; the times are integer microseconds since the
#: Unix epoch (UTC) or None. Compact for the channel layer (msgpack in production) and exact; each web process
#: renders it once per frame in the wire form its clients asked for (bms.realtime.wire).
ROW_VALUE, ROW_QUALITY, ROW_TIME_US, ROW_CHANGED_US, ROW_SEQ = range(5)


def engine_channel() -> str:
    """This node's engine channel (for web processes; the engine is handed it at construction)."""
    from django.conf import settings

    return settings.BMS_ENGINE_CHANNEL
