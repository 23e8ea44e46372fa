"""Settings of the Celery worker and beat that tests/notifications/test_celery_worker.py starts.

The test shape with what it lacks for real Celery: a Redis broker (not eager),
the test database pytest-django created, Django's SMTP backend aimed at the
test's sink, and a short poll period. Everything comes from the environment
the test gives the processes.
"""

import os

from bms.settings.test import *  # noqa: F403
from bms.settings.test import DATABASES

CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = os.environ["BMS_TEST_CELERY_BROKER"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a dead broker: keep trying
DATABASES["default"]["NAME"] = os.environ["BMS_TEST_CELERY_DATABASE"]
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ["BMS_TEST_SMTP_PORT"])
BMS_NOTIFY_POLL_SECONDS = 0.5
BMS_NOTIFY_TIMEOUT = 5.0
