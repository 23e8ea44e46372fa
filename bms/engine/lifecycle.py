"""Building an engine from settings, shared by ``runengine`` and ``runbms``."""

from __future__ import annotations

from channels.layers import get_channel_layer
from django.conf import settings

from bms.engine.runner import Engine


def engine_from_settings() -> Engine:
    return Engine(
        get_channel_layer(),
        publish_min_interval=settings.BMS_PUBLISH_MIN_INTERVAL,
        publish_burst=settings.BMS_PUBLISH_BURST,
        config_check_interval=settings.BMS_CONFIG_CHECK_INTERVAL,
    )
