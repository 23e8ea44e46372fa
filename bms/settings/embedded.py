"""Embedded shape (the default): one process per node, SQLite, in-memory channel layer, eager Celery.

Nothing to install; ``make demo`` runs this. Each node keeps its database
under ``var/`` so that two nodes on one machine stay apart.
"""

import os

from bms.settings.base import *  # noqa: F403
from bms.settings.base import BASE_DIR, BMS_NODE_NAME
from bms.settings.env import database_from_url

DEBUG = os.environ.get("BMS_DEBUG", "0") == "1"
# A fixed development key is acceptable only here: the embedded shape is for
# demos and laptops, and production refuses to start without its own key.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "embedded-demo-key-not-for-production")

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / f'{BMS_NODE_NAME}.sqlite3'}")
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web threads read while the engine writes. IMMEDIATE: a transaction takes the write lock when it
    # begins and waits up to the timeout for it; a deferred one that read first and then writes while another
    # connection (the trend writer's, the web's) holds the lock fails at once with "database is locked".
    DATABASES["default"]["OPTIONS"].update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = "memory://"

# loaddemo --demo-user may create demo/demo here (make demo); production refuses it.
BMS_DEMO_ACCOUNTS = True
