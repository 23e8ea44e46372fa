"""May this user do this: Django permissions, granted through the role groups (bms/accounts/roles.py).

Reading needs a login only. A change needs the model's Django permission
(``add_``/``change_``/``delete_``) or an action's own one (such as
``alarms.acknowledge_alarm``). A refusal is a 403 ``forbidden`` whose
``required`` lists the permissions that were missing and whose ``detail``
names the built-in role that has them.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from bms.accounts.roles import ROLES, role_grants

SAFE_METHODS = frozenset(permissions.SAFE_METHODS)
#: what a change by each method needs of the view's model
MODEL_ACTIONS = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}


def lowest_role(permission: str) -> str | None:
    """The first built-in role (viewer, operator, ...) that has ``permission``, if any."""
    app, _, codename = permission.partition(".")
    grants = role_grants({(app, codename)})
    return next((role for role in ROLES if (app, codename) in grants[role]), None)


class RequiredPermissions(permissions.BasePermission):
    """Base: a logged-in user who has every permission :meth:`required` names for this request."""

    #: what the refusal says the user may not do, e.g. "acknowledge alarms"
    doing = "do this"

    def required(self, request: Request, view: Any) -> list[str]:
        return []

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False  # DRF answers 401 unauthenticated
        missing = [permission for permission in self.required(request, view) if not user.has_perm(permission)]
        if not missing:
            return True
        roles = sorted({role for role in map(lowest_role, missing) if role}, key=ROLES.index)
        given_by = f" (the {roles[-1]} role has {'it' if len(missing) == 1 else 'them'})" if roles else ""
        self.message = {
            "detail": f"{user.get_username()} may not {self.doing}: it needs {', '.join(missing)}{given_by}.",
            "required": missing,
        }
        return False


class ModelPermissions(RequiredPermissions):
    """Read for every logged-in user; POST/PUT/PATCH/DELETE need add/change/delete of the view's model."""

    def required(self, request: Request, view: Any) -> list[str]:
        action = MODEL_ACTIONS.get(request.method or "")
        if action is None:
            return []
        meta = view.get_queryset().model._meta
        self.doing = f"{action} {meta.verbose_name_plural}"
        return [f"{meta.app_label}.{action}_{meta.model_name}"]


def permission(codename: str, doing: str) -> type[RequiredPermissions]:
    """A permission class that requires ``codename`` (``app.codename``) for every method but GET/HEAD/OPTIONS."""

    class Required(RequiredPermissions):
        def required(self, request: Request, view: Any) -> list[str]:
            return [] if request.method in SAFE_METHODS else [codename]

    Required.doing = doing
    Required.__name__ = Required.__qualname__ = f"Requires_{codename.replace('.', '_')}"
    return Required
