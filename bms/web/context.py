"""Template context shared by every page: which node this is."""

from django.conf import settings


def node(request) -> dict:
    return {"bms_node": settings.BMS_NODE_NAME}
