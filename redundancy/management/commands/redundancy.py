"""``python manage.py redundancy status|switchover|take-control``: the pair's state and operator actions.

Run it with the node's own settings (the same environment as its ``runbms``):
it reads and writes that node's database, like the web manager does.

    python manage.py redundancy status            # a summary; --json for the API's document
    python manage.py redundancy switchover        # hand control to the other node, wait until done
    python manage.py redundancy switchover --wait 0   # only ask
    python manage.py redundancy take-control --yes-stale   # a node waiting for its partner after a stale
                                                           # start takes control with what it has (audited)
"""

from __future__ import annotations

import getpass
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from redundancy import operations
from redundancy.nodeview import ACTIVE, NodeView, load_view

POLL_SECONDS = 0.2
DEFAULT_WAIT = 15.0


def _yes(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


class Command(BaseCommand):
    help = "Show the hot-standby pair's state, or hand control to the other node (switchover)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{status,switchover,take-control}")
        status = sub.add_parser("status", help="this node's role, the partner, sync state and the last role changes")
        status.add_argument("--json", action="store_true", help="print the document of GET /api/redundancy/status")
        switch = sub.add_parser("switchover", help="hand control to the other node of the pair")
        switch.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_WAIT,
            metavar="SECONDS",
            help=f"wait for the roles to change, exit 1 if they did not (default {DEFAULT_WAIT:g}; 0: ask only)",
        )

        take = sub.add_parser(
            "take-control",
            help="make a node that waits for its partner (stale start) take control with the state it has",
        )
        take.add_argument(
            "--yes-stale",
            action="store_true",
            help="confirm that this node may lack what its partner did since it stopped (required)",
        )

    def handle(self, *args, action: str, **options: Any) -> None:
        if action == "status":
            self.status(as_json=options["json"])
        elif action == "take-control":
            self.take_control(confirmed=options["yes_stale"])
        else:
            self.switchover(wait=options["wait"])

    def take_control(self, confirmed: bool) -> None:
        view = load_view()
        refusal = operations.take_control_refusal(view)
        if refusal is not None:
            raise CommandError(f"take-control refused: {refusal}")
        if not confirmed:
            raise CommandError(
                f"{view.node} may lack what {view.partner} did since {view.node} stopped (commands, history,"
                " configuration). Start the partner if you can. To take control anyway, repeat with --yes-stale."
            )
        self.stdout.write(operations.request_take_control(view, f"cli:{_os_user()}", "cli"))

    # -- status ----------------------------------------------------------------------------------------------------

    def status(self, as_json: bool) -> None:
        payload = operations.status_payload(load_view())
        if as_json:
            self.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str))
            return
        out = self.stdout.write
        out(f"node {payload['node']}: {payload['role']} (epoch {payload['epoch']})")
        if payload.get("message"):
            out(payload["message"])
        if not payload["pair"]:
            return
        active = payload["active_node"] or "none known"
        out(f"active node: {active}{' at ' + payload['active_url'] if payload['active_url'] else ''}")
        this, sync = payload["this"], payload["sync"]
        if this:
            out(
                f"this node: sync port {this.get('port')}, connected server {_yes(this.get('connected_server'))},"
                f" client {_yes(this.get('connected_client'))}, database {this.get('database')},"
                f" {'verified' if this.get('verified') else 'not verified'}"
            )
        for partner in payload["partners"]:
            age = partner.get("heartbeat_age_ms")
            out(
                f"partner {partner['symbol']} at {partner['ip_address']}:{partner['port']}: {partner.get('role')},"
                f" connected {_yes(partner.get('connected'))}, fault {_yes(partner.get('fault'))},"
                f" heartbeat age {'-' if age is None else f'{age} ms'},"
                f" period {partner['period_ms']} ms, timeout {partner['timeout_ms']} ms, database {partner['database']}"
            )
        if sync:
            lag = sync.get("lag_ms")
            out(
                f"sync: caught up {_yes(sync.get('caught_up'))}, lag {'-' if lag is None else f'{lag:.1f} ms'},"
                f" history backlog {sync.get('history_backlog')}"
            )
        switch = payload["switchover"]
        out("switchover: possible" if switch["allowed"] else f"switchover: not possible ({switch['reason']})")
        if payload["role_changes"]:
            out("last role changes (newest first):")
            for change in payload["role_changes"][:10]:
                out(f"  {change['time'][:19].replace('T', ' ')}  {change['node']}: {change['reason']}")

    # -- switchover ------------------------------------------------------------------------------------------------

    def switchover(self, wait: float) -> None:
        view = load_view()
        refusal = operations.switchover_refusal(view)
        if refusal is not None:
            raise CommandError(f"switchover refused: {refusal}")
        message = operations.request_switchover(view, f"cli:{_os_user()}", "cli")
        self.stdout.write(message)
        if wait <= 0:
            return
        done = self._wait_for_roles(view, wait)
        self.stdout.write(done)

    def _wait_for_roles(self, before: NodeView, wait: float) -> str:
        deadline = time.monotonic() + wait
        target = "standby" if before.role == ACTIVE else ACTIVE
        now = before
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            now = load_view()
            if now.role == target:
                active = now.node if target == ACTIVE else (now.active_node or before.partner)
                return f"switchover complete: {active} is active (epoch {now.epoch}); {now.node} is {now.role}"
            if before.role == ACTIVE and now.role == ACTIVE and now.epoch > before.epoch:
                raise CommandError(
                    f"switchover failed: {before.partner} did not take control, so {now.node} resumed control"
                    f" in epoch {now.epoch} (see the role changes: python manage.py redundancy status)"
                )
        raise CommandError(
            f"switchover not completed within {wait:g} s: {now.node} is still {now.role} (epoch {now.epoch});"
            " see python manage.py redundancy status and the event log"
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
