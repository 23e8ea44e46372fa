"""Test shape: real PostgreSQL and Redis, from BMS_TEST_DATABASE_URL / BMS_TEST_REDIS_URL.

Defaults point at the services on loopback; ``.ci/run`` exports the
variables when it starts its own servers.
"""

import os

from bms.settings.base import *  # noqa: F403
from bms.settings.env import database_from_url

SECRET_KEY = "test-only-key"
DATABASE_URL = os.environ.get("BMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bms")
REDIS_URL = os.environ.get("BMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASES = {"default": database_from_url(DATABASE_URL, "BMS_TEST_DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = 0
# pytest-django holds a transaction open around each test, idle while the test waits for a thread or a process:
# PostgreSQL must not end it (the nodes of the system tests run the production settings, with the limit).
DATABASES["default"]["OPTIONS"].pop("options", None)
# In-process tests (WebsocketCommunicator) use the in-memory layer; the
# system tests run real nodes in the production shape on Redis.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_BROKER_URL = "memory://"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
BMS_PUBLISH_MIN_INTERVAL = 0.0
# Tests see only the devices they create (tests/trends/test_node_health.py turns it on).
BMS_NODE_HEALTH_POINTS = False
BMS_DEMO_ACCOUNTS = True
