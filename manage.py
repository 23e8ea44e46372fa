#!/usr/bin/env python
"""Django's command-line utility for the BMS node."""

import faulthandler
import os
import signal
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bms.settings.embedded")
    # `kill -USR1 <pid>` writes every thread's stack to stderr (the node's log): how to see where a node that does
    # not stop, or does not answer, is waiting, without stopping it.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    from django.core.management import execute_from_command_line

    from bms.audit.context import Actor, acting

    # Configuration a command changes (loaddemo, importpoints, createsuperuser, ...) is audited as made by it.
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    with acting(Actor("command", name=f"manage.py {command}")):
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
