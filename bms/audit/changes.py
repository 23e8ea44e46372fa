"""Every change of the configuration is an audit entry: who, through what, which object, and the difference.

Covers devices, points, alarm classes and definitions, schedules and
calendars, logic rules, notification recipients and rules, sites and who may
see them, users and groups
(:data:`AUDITED`), whether changed in the admin, the API, the web manager,
an import or a command: it hangs on the models' signals, so no path is
missed. API tokens record their own making and revoking
(bms/tokens/services.py). An entry reads ``<model>.created``, ``.changed``
or ``.deleted`` with ``detail`` holding ``via``, the object's id and
``changes`` ``{field: [old, new]}`` (bounded values: bms/audit/values.py;
a password only as ``"changed"``); group and permission memberships as
``<model>.<relation>_changed`` with what was added and removed. A save that
changes nothing records nothing.

Bulk operations send no signals: the standby's application of the active
node's configuration (which must not be recorded a second time) uses them,
and is also wrapped in :func:`~bms.audit.context.not_recorded` because its
deletions do send signals. Who: :mod:`bms.audit.context`: a request's user
(admin, API, web manager), an import or a ``manage.py`` command. Code that
runs in-process without an actor (a test's database flush, the engine, a
Django shell) records nothing: it is nobody's change to account for.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from bms.audit import context
from bms.audit.values import recordable

log = logging.getLogger(__name__)

#: app labels (every model of the app that is not history) and single models (app_label.model_name)
AUDITED = (
    "points.device",
    "points.point",
    "alarms.alarmclass",
    "alarms.alarmdefinition",
    "schedules",
    "logic",
    "notifications",
    "sites",
    "auth.user",
    "auth.group",
)
#: fields whose values are never recorded, only that they changed
SECRET_FIELDS = frozenset({"password"})
#: fields that change on their own (logins) and are not configuration
IGNORED_FIELDS = frozenset({"last_login"})
_BEFORE = "_bms_audit_before"


def audited_models() -> list[type[models.Model]]:
    from bms.history.models import HistoryRow

    found: list[type[models.Model]] = []
    for entry in AUDITED:
        if "." in entry:
            found.append(apps.get_model(entry))
        else:
            found.extend(m for m in apps.get_app_config(entry).get_models() if not issubclass(m, HistoryRow))
    return found


def values_of(instance: models.Model) -> dict[str, Any]:
    """The instance's stored columns by attribute name (foreign keys as their ids), the key left out."""
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
        if not field.primary_key and field.attname not in IGNORED_FIELDS
    }


def _shown(field: str, value: Any) -> Any:
    return "(secret)" if field in SECRET_FIELDS else recordable(value)


def _difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    changes = {}
    for field, new in after.items():
        old = before.get(field)
        if old != new:
            changes[field] = ["changed"] if field in SECRET_FIELDS else [_shown(field, old), _shown(field, new)]
    return changes


def _record(action: str, instance: models.Model, detail: dict[str, Any]) -> None:
    from bms.control.models import AuditEntry

    actor = context.current()
    if actor is None:
        return  # not a person's change: code run in-process (a test's database flush, the engine, a shell)
    user, username = actor.resolve()
    AuditEntry.objects.create(
        user=user,
        username=username or actor.via,
        action=f"{instance._meta.model_name}.{action}",
        target=str(recordable(str(instance), 128)),
        detail={"via": actor.via, "id": instance.pk, **detail},
    )


def _before_save(sender: type[models.Model], instance: models.Model, raw: bool = False, **_: Any) -> None:
    if raw or not context.recording() or context.current() is None or instance.pk is None:
        return
    stored = sender._default_manager.filter(pk=instance.pk).first()
    setattr(instance, _BEFORE, values_of(stored) if stored is not None else None)


def _after_save(sender: type[models.Model], instance: models.Model, created: bool, raw: bool = False, **_: Any) -> None:
    if raw or not context.recording():
        return
    before = instance.__dict__.pop(_BEFORE, None)
    after = values_of(instance)
    if created or before is None:
        _record("created", instance, {"changes": _difference({}, after)})
        return
    changes = _difference(before, after)
    if changes:
        _record("changed", instance, {"changes": changes})


def _after_delete(sender: type[models.Model], instance: models.Model, **_: Any) -> None:
    if context.recording():
        _record("deleted", instance, {"values": {k: _shown(k, v) for k, v in values_of(instance).items()}})


def _relation_changed(
    sender: type[models.Model], instance: models.Model, action: str, reverse: bool, model: type, pk_set: Any, **_: Any
) -> None:
    if reverse or action not in ("post_add", "post_remove", "post_clear") or not context.recording():
        return
    relation = next(
        (f.name for f in instance._meta.many_to_many if f.remote_field.through is sender), sender._meta.model_name
    )
    names = sorted(str(obj) for obj in model._default_manager.filter(pk__in=pk_set or ())) if pk_set else []
    verb = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}[action]
    _record(f"{relation}_changed", instance, {verb: [recordable(name) for name in names[:50]]})


def connect() -> None:
    """Hang the recorder on every audited model's signals (from the app's ``ready``)."""
    for model in audited_models():
        uid = f"bms.audit.{model._meta.label_lower}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}.pre")
        post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}.post")
        post_delete.connect(_after_delete, sender=model, dispatch_uid=f"{uid}.delete")
        for field in model._meta.many_to_many:
            m2m_changed.connect(
                _relation_changed, sender=field.remote_field.through, dispatch_uid=f"{uid}.{field.name}"
            )
