"""ASGI entry point: Django for HTTP, the live websocket behind session auth and an origin check."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bms.settings.embedded")
django_asgi_app = get_asgi_application()  # before importing consumers (they import models)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from bms.realtime.outlet import expose_connection  # noqa: E402
from bms.realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The web manager ships one script and one stylesheet: Django serves them
        # itself, so a node needs no separate static file server.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        # expose_connection: the live hub writes prepared frames straight to Daphne's connection (outlet.py)
        "websocket": expose_connection(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
