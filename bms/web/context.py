"""Template context shared by every page: which node this is, and at which priority alarms sound."""

from django.conf import settings

#: new alarms of this priority or more urgent (a smaller number) sound in the browser: the critical and high classes
ALARM_SOUND_PRIORITY = 300


def node(request) -> dict:
    return {
        "bms_node": settings.BMS_NODE_NAME,
        "bms_alarm_sound_priority": getattr(settings, "BMS_ALARM_SOUND_PRIORITY", ALARM_SOUND_PRIORITY),
    }
