from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "bms.realtime"
    label = "realtime"

    def ready(self) -> None:
        # Every process (web and engine) uses the channel layer; keep its outage logging to one line.
        from bms.realtime.layer_health import install_log_filter

        install_log_filter()
