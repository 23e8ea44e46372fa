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
        # channels_redis' pub/sub layer with a receive loop that cannot spin when Redis falls silent
        # (bms/realtime/redis_layer.py)
        "BACKEND": "bms.realtime.redis_layer.SteadyPubSubChannelLayer",
        # Redis pub/sub ignores database numbers: the prefix keeps nodes that
        # share one Redis apart.
        "CONFIG": {"hosts": [REDIS_URL], "prefix": BMS_CHANNEL_PREFIX},
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL

# --- Transport security (docs/security.md) -----------------------------------------------------------------------
# A production node is reached over HTTPS, its own or a TLS proxy's: cookies only over HTTPS, plain HTTP redirected,
# HSTS. With the defaults `manage.py check --deploy` has nothing to warn of (tests/security/test_deploy_check.py).
# BMS_SECURE_TRANSPORT=0 serves plain HTTP (a lab, the compose pair on localhost); check --deploy then warns, rightly.
SECURE_TRANSPORT = flag("BMS_SECURE_TRANSPORT", default=True)
SESSION_COOKIE_SECURE = SECURE_TRANSPORT
CSRF_COOKIE_SECURE = SECURE_TRANSPORT
SESSION_COOKIE_HTTPONLY = True
# Not HttpOnly: the documented scripts (docs/api.md) read the CSRF cookie; Django's deploy check no longer asks it.
CSRF_COOKIE_HTTPONLY = False
# Behind a TLS proxy: the header it sets to say the client used HTTPS (e.g. X-Forwarded-Proto). Only with a proxy
# that always sets (and overwrites) it: otherwise a client could claim HTTPS itself.
_proxy_header = os.environ.get("BMS_PROXY_SSL_HEADER", "").strip()
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
# The proxy may redirect HTTP itself (BMS_SSL_REDIRECT=0) and set HSTS itself (BMS_HSTS_SECONDS=0): turning either
# off here is a statement that something in front does it, so Django's deploy check is told not to warn of it.
SECURE_SSL_REDIRECT = flag("BMS_SSL_REDIRECT", default=SECURE_TRANSPORT)
# Load balancers probe health over plain HTTP inside the site network; a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz(/active)?$"]
SECURE_HSTS_SECONDS = int(os.environ.get("BMS_HSTS_SECONDS", "31536000" if SECURE_TRANSPORT else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = flag("BMS_HSTS_INCLUDE_SUBDOMAINS", default=True)
# "preload" in the header does nothing until the domain is submitted to the browsers' preload list (by hand).
SECURE_HSTS_PRELOAD = flag("BMS_HSTS_PRELOAD", default=True)
SILENCED_SYSTEM_CHECKS = []
if SECURE_TRANSPORT and not SECURE_SSL_REDIRECT:
    SILENCED_SYSTEM_CHECKS.append("security.W008")
if SECURE_TRANSPORT and not SECURE_HSTS_SECONDS:
    SILENCED_SYSTEM_CHECKS.append("security.W004")
# Demo accounts (loaddemo --demo-user) are refused here; a test rig that runs real production-shape nodes with the
# demo operator says so explicitly (tests/support).
BMS_DEMO_ACCOUNTS = flag("BMS_ALLOW_DEMO_USER")

# Alarm notification email (docs/notifications.md): the site's SMTP relay; nothing here is required.
EMAIL_HOST = os.environ.get("BMS_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("BMS_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("BMS_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("BMS_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = flag("BMS_EMAIL_STARTTLS")
EMAIL_USE_SSL = flag("BMS_EMAIL_SSL")
DEFAULT_FROM_EMAIL = os.environ.get("BMS_EMAIL_FROM", "bms@localhost")
