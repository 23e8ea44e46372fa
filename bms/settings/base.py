"""Settings shared by every deployment shape; shapes override what differs."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = False
ALLOWED_HOSTS = [
    host.strip() for host in os.environ.get("BMS_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if host.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "bms.history",
    "bms.sites",
    "bms.points",
    "bms.engine",
    "bms.control",
    "bms.events",
    "bms.alarms",
    "bms.trends",
    "bms.notifications",
    "bms.realtime",
    "bms.web",
    "bms.api",
    "bms.schedules",
    "bms.logic",
    "bms.tokens",
    "bms.audit",
    "redundancy",
    "axes",  # login throttling and lockout (bms/accounts/throttle.py, docs/security.md)
    "csp",  # the Content-Security-Policy header (below)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # NUL characters are refused before anything reads or stores them (bms/accounts/input_guard.py)
    "bms.accounts.input_guard.InputGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # records every request made with an API token, with its answer's status (bms/tokens/middleware.py)
    "bms.tokens.middleware.TokenUseMiddleware",
    # who changes the configuration in this request, for its audit entries (bms/audit/changes.py)
    "bms.audit.middleware.AuditContextMiddleware",
    "redundancy.middleware.StandbyReadOnlyMiddleware",
    "bms.web.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # last, as axes requires: it turns a locked-out login into its 429 answer
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "bms.urls"
ASGI_APPLICATION = "bms.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "bms.web.context.node",
                "redundancy.context.pair",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Axes' backend first: it refuses a locked-out client before the password is even checked.
AUTHENTICATION_BACKENDS = ["bms.accounts.throttle.LoginThrottleBackend", "django.contrib.auth.backends.ModelBackend"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "points"
LOGOUT_REDIRECT_URL = "login"

# The node's identity in the pair; redundancy fills in the partner.
BMS_NODE_NAME = os.environ.get("BMS_NODE_NAME", "main")
# Channel-layer names of this node. Nodes that share one Redis must differ in
# prefix or node name, or they would hear each other's live streams.
BMS_CHANNEL_PREFIX = os.environ.get("BMS_CHANNEL_PREFIX", "bms")
BMS_ENGINE_CHANNEL = f"{BMS_CHANNEL_PREFIX}.engine.{BMS_NODE_NAME}"
# Engine tuning. The publisher sends up to BURST messages back to back, then at
# most one coalesced message per MIN_INTERVAL seconds (a token bucket).
BMS_PUBLISH_MIN_INTERVAL = float(os.environ.get("BMS_PUBLISH_MIN_INTERVAL", "0.02"))
# Above this many points a node whose engine shares its process with the web side (runbms without --web-workers)
# warns at each configuration load: the two share one interpreter lock, and at 100,000 points a configuration
# change tipped such a node into polling late, points going stale and back, and polling later still
# (bench/alarms.py, bench/logic.py; ADR 0013). 0: never warn.
BMS_ONE_PROCESS_POINTS = int(os.environ.get("BMS_ONE_PROCESS_POINTS", "30000"))
# 1: devices polled at evenly spread moments of their interval (bms/engine/poller.py), so that a hundred devices do not
# answer in the same instant: a steadier engine loop (lag p99 23 -> 6 ms at 100 devices) for more engine CPU per
# changed value (20-30 -> 36 µs in bench/alarms.py, 2 December 2026). 0 (default): every device on one grid.
BMS_POLL_SPREAD = os.environ.get("BMS_POLL_SPREAD", "0") == "1"
# The most of one turn of the engine loop (ms of wall time) spent on poll answers and alarm, trend and logic slices
# together; the rest wait for a later turn in arrival order, so heartbeats, timers and the publisher run in between
# (bms/engine/turns.py, ADR 0023). 0: no limit (each slice then takes its own 10 ms).
BMS_TURN_BUDGET_MS = float(os.environ.get("BMS_TURN_BUDGET_MS", "10"))
# What one live websocket client may send (bms/realtime/consumers.py): messages per second and burst, and of those
# the snapshot-costing ones (resync, subscribe); beyond them it gets an error, then is closed (4429).
BMS_LIVE_MESSAGE_RATE = float(os.environ.get("BMS_LIVE_MESSAGE_RATE", "20"))
BMS_LIVE_MESSAGE_BURST = float(os.environ.get("BMS_LIVE_MESSAGE_BURST", "60"))
BMS_LIVE_SNAPSHOT_RATE = float(os.environ.get("BMS_LIVE_SNAPSHOT_RATE", "1"))
BMS_LIVE_SNAPSHOT_BURST = float(os.environ.get("BMS_LIVE_SNAPSHOT_BURST", "5"))
# Live messages larger than this go out as a fragmented WebSocket message, so a client that cannot take a large
# snapshot at once holds no copy of it (bms/realtime/outlet.py, ADR 0013). 0: always one frame.
BMS_LIVE_FRAGMENT_BYTES = int(os.environ.get("BMS_LIVE_FRAGMENT_BYTES", str(128 << 10)))
BMS_PUBLISH_BURST = int(os.environ.get("BMS_PUBLISH_BURST", "8"))
BMS_CONFIG_CHECK_INTERVAL = float(os.environ.get("BMS_CONFIG_CHECK_INTERVAL", "1.0"))
BMS_COMMAND_WAIT_SECONDS = float(os.environ.get("BMS_COMMAND_WAIT_SECONDS", "3.0"))
# Events wait in the engine's memory while its database is away; beyond this many the oldest are dropped (counted).
BMS_EVENT_BUFFER = int(os.environ.get("BMS_EVENT_BUFFER", "10000"))
# Alarms (docs/operator-guide.md): shelving without a duration, the longest shelving, chattering (more than COUNT
# activations and returns within WINDOW seconds), and journal rows held in memory while the database is away.
BMS_ALARM_SHELVE_DEFAULT_SECONDS = float(os.environ.get("BMS_ALARM_SHELVE_DEFAULT_SECONDS", "900"))
BMS_ALARM_SHELVE_MAX_SECONDS = float(os.environ.get("BMS_ALARM_SHELVE_MAX_SECONDS", "28800"))
BMS_ALARM_CHATTER_COUNT = int(os.environ.get("BMS_ALARM_CHATTER_COUNT", "5"))
BMS_ALARM_CHATTER_WINDOW_SECONDS = float(os.environ.get("BMS_ALARM_CHATTER_WINDOW_SECONDS", "60"))
BMS_ALARM_JOURNAL_BUFFER = int(os.environ.get("BMS_ALARM_JOURNAL_BUFFER", "200000"))
# The site's time zone: schedules are evaluated in it (each keeps its own, defaulting to this); empty: TIME_ZONE.
BMS_SITE_TIME_ZONE = os.environ.get("BMS_SITE_TIME_ZONE", "")
# Who drains the alarm notification outbox (docs/notifications.md): "auto" = a thread of the node when Celery has no
# broker (embedded), else the Celery worker; "on" = always the node's thread (a site without a worker); "off" = never.
BMS_NOTIFY_RUNNER = os.environ.get("BMS_NOTIFY_RUNNER", "auto")
# A command not started within its lifetime ends "expired" and is never sent (ADR 0008): a write
# accepted before a pause or a failover must not reach the device long after the operator gave up.
BMS_COMMAND_LIFETIME_SECONDS = float(os.environ.get("BMS_COMMAND_LIFETIME_SECONDS", "5.0"))
# How long an operator's or a client's write waits for a database lock before it is refused (503 "busy")
BMS_WRITE_LOCK_WAIT_MS = float(os.environ.get("BMS_WRITE_LOCK_WAIT_MS", "1000"))
# The lifetime of the commands schedules and logic make (bms/engine/sink.py). Theirs is a level the function keeps
# wanting, and a function commands again only when its output moves: a command that expired in a burst (enabling
# 5,000 rules made 5,700 at once for one device, and 2,462-3,771 of them expired at 5 s; bench/logic.py) would be
# made again by its function (bms/engine/retry.py), the burst repeating itself. A later command of the same point
# is executed after it, so lateness never leaves an older value standing. 0.1 to 3600 s (ADR 0018).
BMS_FUNCTION_COMMAND_LIFETIME_SECONDS = float(os.environ.get("BMS_FUNCTION_COMMAND_LIFETIME_SECONDS", "300"))
# May `loaddemo --demo-user` create the operator demo/demo? Only the embedded and test shapes say yes.
BMS_DEMO_ACCOUNTS = False
# Test-only fault injection (tests/system): hold each pending command this long before claiming it,
# so a test can pause the node at exactly that step. Ignored unless BMS_ALLOW_FAULT_INJECTION=1.
BMS_ALLOW_FAULT_INJECTION = os.environ.get("BMS_ALLOW_FAULT_INJECTION", "") == "1"
BMS_FAULT_CLAIM_DELAY_MS = float(os.environ.get("BMS_FAULT_CLAIM_DELAY_MS", "0") or 0)

# The hot-standby pair (redundancy/config.py reads and checks these; docs/redundancy.md explains them).
# Without BMS_PARTNER_ADDRESS the node runs alone and is always active.
BMS_PARTNER_NAME = os.environ.get("BMS_PARTNER_NAME", "")
BMS_PARTNER_ADDRESS = os.environ.get("BMS_PARTNER_ADDRESS", "")  # host:port of the partner's sync port
BMS_PARTNER_URL = os.environ.get("BMS_PARTNER_URL", "")  # the partner's web address, for clients that follow
BMS_PUBLIC_URL = os.environ.get("BMS_PUBLIC_URL", "")  # this node's web address as clients reach it
BMS_SYNC_HOST = os.environ.get("BMS_SYNC_HOST", "127.0.0.1")
BMS_SYNC_PORT = os.environ.get("BMS_SYNC_PORT", "8800")
BMS_SYNC_SECRET = os.environ.get("BMS_SYNC_SECRET", "")
BMS_PREFERRED = os.environ.get("BMS_PREFERRED", "")  # default: the node named "main" is preferred
BMS_HEARTBEAT_PERIOD_MS = os.environ.get("BMS_HEARTBEAT_PERIOD_MS", "1000")
BMS_HEARTBEAT_TIMEOUT_MS = os.environ.get("BMS_HEARTBEAT_TIMEOUT_MS", "")  # default: 3 x period
BMS_HEARTBEAT_RETRIES = os.environ.get("BMS_HEARTBEAT_RETRIES", "3")
BMS_STARTUP_ALLOWANCE_MS = os.environ.get("BMS_STARTUP_ALLOWANCE_MS", "")  # default: 2 x timeout + 2 s
BMS_HOLD_DOWN_MS = os.environ.get("BMS_HOLD_DOWN_MS", "10000")
BMS_FLAP_WINDOW_MS = os.environ.get("BMS_FLAP_WINDOW_MS", "60000")  # link losses remembered this long; 0: no damping
BMS_FLAP_MAX_DELAY_MS = os.environ.get("BMS_FLAP_MAX_DELAY_MS", "")  # default: 8 x timeout
BMS_CLOCK_SKEW_WARN_MS = os.environ.get("BMS_CLOCK_SKEW_WARN_MS", "1000")  # partner clock offset that is warned of
BMS_FAILBACK = os.environ.get("BMS_FAILBACK", "auto")
BMS_WITNESS_ADDRESS = os.environ.get("BMS_WITNESS_ADDRESS", "")
BMS_REDUNDANCY_ACTIVATE = os.environ.get("BMS_REDUNDANCY_ACTIVATE", "1")
BMS_DB_SYNC = os.environ.get("BMS_DB_SYNC", "1")
BMS_REDUNDANCY_COMMENT = os.environ.get("BMS_REDUNDANCY_COMMENT", "")
BMS_PARTNER_COMMENT = os.environ.get("BMS_PARTNER_COMMENT", "")

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("BMS_LOG_LEVEL", "INFO")},
    "loggers": {
        # pymodbus logs every exception response with a frame dump; the engine
        # reports those as point quality and events instead.
        "pymodbus": {"level": "CRITICAL"},
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # axes logs every login at INFO; its lockouts come at WARNING
        "axes": {"level": "WARNING"},
    },
}

# The REST API under /api/v1/ (bms/api/v1/, docs/api.md): DRF, its OpenAPI schema, Swagger UI and Redoc served locally.
INSTALLED_APPS += ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "bms.accounts"]
REST_FRAMEWORK = {
    # The web manager's session (CSRF token on changes; first, so a 401 names it in WWW-Authenticate) and API tokens
    # for scripts (bms/tokens: Authorization: Bearer bms_...; the session class ignores a request without a session).
    "DEFAULT_AUTHENTICATION_CLASSES": ["bms.api.v1.auth.SessionAuthentication", "bms.tokens.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["bms.api.v1.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "bms.api.v1.pagination.LimitOffsetPagination",
    "EXCEPTION_HANDLER": "bms.api.v1.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNICODE_JSON": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BMS API",
    "DESCRIPTION": "The building-management server's REST API (docs/api.md). Log in through /login/ first.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl null: Swagger UI never sends the schema to swagger.io's online validator
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Login throttling (django-axes; docs/security.md) -------------------------------------------------------------
# Failures are counted per (client address, user name) in the database (axes' AccessAttempt table), so they survive
# a restart; after BMS_LOGIN_FAILURE_LIMIT failures that pair is refused (HTTP 429) for BMS_LOGIN_COOLOFF_MINUTES.
# Not per user name alone: anyone on the building network could then lock the operators out during an incident.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = int(os.environ.get("BMS_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("BMS_LOGIN_COOLOFF_MINUTES", "15")) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "bms.accounts.throttle.client_address"
AXES_USERNAME_CALLABLE = "bms.accounts.throttle.username"
AXES_LOCKOUT_TEMPLATE = "web/locked_out.html"
# Axes would log every successful login as a row of its own: the audit trail and the session table say enough.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# Behind a reverse proxy every client has the proxy's address: with BMS_TRUSTED_PROXIES=N, the client is the Nth
# address from the right of X-Forwarded-For (the one the outermost trusted proxy saw). 0: REMOTE_ADDR.
BMS_TRUSTED_PROXIES = int(os.environ.get("BMS_TRUSTED_PROXIES", "0"))

# --- Content-Security-Policy (django-csp; docs/security.md) ------------------------------------------------------
# Scripts only from this node's own files: no inline script, no eval, no CDN. Styles may be inline: Redoc and
# Swagger UI inject style elements and the admin uses style attributes; a style cannot run script.
# connect-src: this node (CSP 3's 'self' covers the live websocket, ws: or wss:, to the same host) and the partner
# node, whose /healthz pages probe before they follow it (static/bms/follow.js).
_partner_origin = "/".join(BMS_PARTNER_URL.split("/")[:3]) if "://" in BMS_PARTNER_URL else ""
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'", *([_partner_origin] if _partner_origin else [])],
        # Redoc runs its search in a worker made from a blob
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
X_FRAME_OPTIONS = "DENY"
