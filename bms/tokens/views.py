"""The web manager's API token page: a user's own tokens, a form to make one (its key shown once), revoke.

The form offers the sites the user sees (docs/sites.md): a token narrowed to some of them sees only those; one
narrowed to none sees all of the user's sites.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from bms.sites.models import Site
from bms.sites.scope import in_sites, request_site_ids
from bms.tokens.models import DEFAULT_DAYS, MAX_DAYS, SCOPES, ApiToken, TokenUse
from bms.tokens.services import MAX_SITES, TokenRequestInvalid, issue, revoke


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """List the user's tokens (with their last use); a POST makes one and shows its key on this answer only."""
    issued = None
    form = {"name": "", "scope": "read", "days": str(DEFAULT_DAYS)}
    chosen: list[str] = []
    if request.method == "POST":
        form = {key: str(request.POST.get(key, ""))[:100] for key in form}
        # one more than allowed is kept, so that too many is refused by issue() rather than silently cut
        chosen = [name[:100] for name in request.POST.getlist("sites")[: MAX_SITES + 1]]
        try:
            days = float(form["days"])
        except ValueError:
            days = -1.0
        try:
            issued = issue(request.user, form["name"], form["scope"], days, by=request.user, sites=chosen)
        except TokenRequestInvalid as exc:
            messages.error(request, f"No token made: {exc}.")
    mine = list(ApiToken.objects.filter(user=request.user).prefetch_related("sites__site"))
    last_use = dict(
        TokenUse.objects.filter(prefix__in=[token.prefix for token in mine])
        .values("prefix")
        .annotate(last=Max("time"))
        .values_list("prefix", "last")
    )
    now = timezone.now()
    rows = [
        {
            "token": token,
            "state": token.state(now),
            "last_used": last_use.get(token.prefix),
            "sites": sorted(entry.site.name for entry in token.sites.all()),
        }
        for token in mine
    ]
    sites = in_sites(Site.objects.all(), request_site_ids(request), "pk")
    context = {"rows": rows, "issued": issued, "form": form, "scopes": SCOPES, "max_days": MAX_DAYS}
    return render(
        request,
        "web/tokens.html",
        {**context, "sites": sites, "chosen": sorted(set(chosen))},
        status=400 if request.method == "POST" and issued is None else 200,
    )


@login_required
@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the user's own tokens (another user's is not found: 404)."""
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if revoke(token, request.user):
        messages.success(request, f"Token bms_{token.prefix} ({token.name}) revoked.")
    return redirect("api-tokens")
