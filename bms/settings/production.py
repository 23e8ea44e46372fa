"""Production shape: PostgreSQL, Redis channel layer and Celery broker, all from the environment.

Required: ``DJANGO_SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL``. A missing one
stops start-up with a message naming it.
"""

import os

from bms.settings.base import *  # noqa: F403
from bms.settings.base import BMS_CHANNEL_PREFIX
from bms.settings.env import database_from_url, flag, required

DEBUG = flag("BMS_DEBUG")
SECRET_KEY = required("DJANGO_SECRET_KEY")
DATABASES = {"default": database_from_url(required("DATABASE_URL"))}
# A pool per process (psycopg_pool, Django 5.1+): Daphne gives each web request a thread of its own and
# Channels' handshakes run on one shared thread, so without it every request and every websocket login opened a
# PostgreSQL connection (and, persistent, kept it until the server ran out: bench/stress.py). Waiting longer
# than BMS_DB_POOL_TIMEOUT for a connection fails the request instead of queueing it without end.
DATABASES["default"]["OPTIONS"]["pool"] = {
    "min_size": 2,
    "max_size": int(os.environ.get("BMS_DB_POOL_SIZE", "20")),
    "timeout": float(os.environ.get("BMS_DB_POOL_TIMEOUT", "5")),
    "max_idle": 60,
}
REDIS_URL = required("REDIS_URL")

# The pub/sub layer measured ~3x the group fan-out of the list-based layer on
# this stack; losses are detected by sequence numbers and healed by snapshots.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # Redis pub/sub ignores database numbers: the prefix keeps nodes that
        # share one Redis apart.
        "CONFIG": {"hosts": [REDIS_URL], "prefix": BMS_CHANNEL_PREFIX},
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

# Alarm notification email (docs/notifications.md): the site's SMTP relay; nothing here is required.
EMAIL_HOST = os.environ.get("BMS_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("BMS_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("BMS_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("BMS_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = flag("BMS_EMAIL_STARTTLS")
EMAIL_USE_SSL = flag("BMS_EMAIL_SSL")
DEFAULT_FROM_EMAIL = os.environ.get("BMS_EMAIL_FROM", "bms@localhost")
