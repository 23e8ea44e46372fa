"""The web manager's logic page (issue 12 item 5): the rules with their live inputs, outputs and block states.

``/logic/`` is rendered once with every rule (kind, what it reads and
writes, priority, enabled); ``static/bms/logic.js`` then fills in the live
part from the websocket: each rule's image entry ``logic:<name>`` (quality,
why it is bad, the last value commanded per output, the block's state:
timers, integrator, runtimes) and the values of the points it reads and
writes. Enabling and disabling go through the REST API
(``/api/v1/rules/<id>/enable``), which checks the rule again. Editing a
rule's definition is done in the configuration (admin) or through the API;
on a standby the page is read-only.

Sites (ADR 0021): a caller restricted to some sites sees only the rules of
those sites (and so only their points).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from bms.logic.models import Rule
from bms.sites import scope as sites
from redundancy.nodeview import node_view


@login_required
@require_GET
def rules(request: HttpRequest) -> HttpResponse:
    """The caller's rules, with what they read and write; the live state arrives over the websocket."""
    rules_seen = sites.in_sites(Rule.objects.select_related("site"), sites.request_site_ids(request))
    listed = [
        {"rule": rule, "reads": rule.input_points(), "writes": rule.output_names()}
        for rule in rules_seen.order_by("name")
    ]
    return render(
        request,
        "web/logic.html",
        {
            "rules": listed,
            "can_switch": request.user.has_perm("logic.change_rule") and node_view(request).writable,
        },
    )
