"""Logic rules (issue 12 item 6): expressions and blocks that read points and command points at a priority.

=========================================  ==========================================  =============================
``rules/`` (CRUD)                          the rules                                   read: all; write:
                                                                                       ``logic.*_rule``
``POST rules/<id>/enable``, ``/disable``   switch a rule on or off                     ``logic.change_rule``
``GET  rules/live``                        each rule's live state, inputs and outputs  every logged-in user
=========================================  ==========================================  =============================

A rule is checked whole by its model on every save (docs/logic.md: syntax
and type errors with the column, unknown points, outputs that are not
writable, parameters, two rules on one slot, cycles between rules); each
refusal is a 400 ``invalid`` with the model's message under its field.
Enabling a rule checks it again (a rule disabled while another took its slot
cannot come back). Every change bumps the configuration revision, so the
engine reloads and carries each rule's state over by name.

Sites (ADR 0021): a rule belongs to a site and reads and writes only its
points. A caller restricted to some sites lists, reaches, switches and sees
the live state of only the rules of those sites: another id is answered
exactly like one that does not exist (a 404, looked up before the permission
check, also for changes), and a point of another site named in a
rule exactly like a point that does not exist. ``site`` (a name) is in every
answer and taken on create (default: the default site ``main`` when the
caller sees it, else required).

The live state comes from the process image: the rule's entry
``logic:<name>`` (quality, why it is bad, the last command per output, the
block's state) and the values of the points it reads and writes.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import LookupMixin, ModelValidationMixin, MultiValueField, parse_query
from bms.api.v1.checked import LookupFirstMixin
from bms.api.v1.configuration import live_entries
from bms.api.v1.docs import error_responses
from bms.api.v1.fields import StrictModelSerializer
from bms.api.v1.permissions import ModelPermissions, permission
from bms.api.v1.schedules import SiteScopedMixin
from bms.api.v1.scoping import DefaultSiteMixin, context_site_ids, site_field
from bms.logic.models import Rule
from bms.sites import scope as sites

#: the image entry of a rule (docs/logic.md)
ENTRY_PREFIX = "logic:"


class RuleSerializer(DefaultSiteMixin, StrictModelSerializer):
    """A rule: its site, an expression or a block with an expression per input and its parameters."""

    site = site_field(help_text="the site (by name); the rule's points are of it; default: main, if yours")

    inputs = serializers.JSONField(
        required=False, help_text='blocks: an expression per input, e.g. {"pv": "{zone1_temp}", "sp": 21.5}'
    )
    params = serializers.JSONField(required=False, help_text='blocks: the parameters, e.g. {"kp": 2, "ki": 0.05}')
    reads = serializers.SerializerMethodField(help_text="the points the rule reads")
    writes = serializers.SerializerMethodField(help_text="the points it writes (a sequencer: in lead order)")

    class Meta:
        model = Rule
        fields = [
            "id",
            "name",
            "description",
            "enabled",
            "kind",
            "expression",
            "inputs",
            "params",
            "output",
            "priority",
            "cycle_time",
            "quality_policy",
            "fallback_value",
            "output_deadband",
            "site",
            "reads",
            "writes",
        ]

    def create(self, validated: dict[str, Any]) -> Rule:
        rule = Rule(**validated)
        self._save(rule)
        return rule

    def update(self, rule: Rule, validated: dict[str, Any]) -> Rule:
        for name, value in validated.items():
            setattr(rule, name, value)
        self._save(rule)
        return rule

    def _save(self, rule: Rule) -> None:
        """Save (checked whole by the model) with the points of the caller's sites only: another's reads as unknown."""
        rule.point_scope = sites.points_in_sites(context_site_ids(self.context))
        rule.save()

    def get_reads(self, rule: Rule) -> list[str]:
        return rule.input_points()

    def get_writes(self, rule: Rule) -> list[str]:
        return rule.output_names()


def rule_state(entry: dict[str, Any] | None, outputs: list[str]) -> dict[str, Any] | None:
    """A rule's image entry (``RuleState.to_dict()`` as its value) for people: quality, reason, outputs, block."""
    if not entry or not isinstance(entry.get("value"), dict):
        return None
    state = entry["value"]
    last = state.get("out") or []
    return {
        "quality": state.get("q"),
        "reason": state.get("why", ""),
        "outputs": [
            {"point": point, "value": last[index] if index < len(last) else None} for index, point in enumerate(outputs)
        ],
        "block": state.get("block") or {},
        "commands": state.get("n", 0),
        "time": entry.get("time"),
        "seq": entry.get("seq"),
    }


class LiveQuerySerializer(serializers.Serializer):
    """Filters of ``rules/live``."""

    rule = MultiValueField(child=serializers.CharField(max_length=64), help_text="rule names (default: every rule)")


class PointValueSerializer(serializers.Serializer):
    value = serializers.JSONField(allow_null=True)
    quality = serializers.CharField()
    time = serializers.DateTimeField(allow_null=True)


class LiveRuleSerializer(serializers.Serializer):
    """One rule's live view."""

    name = serializers.CharField()
    enabled = serializers.BooleanField()
    kind = serializers.CharField()
    state = serializers.JSONField(
        allow_null=True,
        help_text="`quality`, `reason`, `outputs` (point, last commanded value), `block` (its state), `commands`, "
        "`time`; null: the engine holds no state for it (not running it, disabled, or not answering)",
    )
    points = serializers.DictField(
        child=PointValueSerializer(), help_text="the live value and quality of each point it reads or writes"
    )


class LiveRulesSerializer(serializers.Serializer):
    rules = LiveRuleSerializer(many=True)
    live_problem = serializers.CharField(allow_null=True, help_text="why there are no live states (the engine)")


@extend_schema_view(
    list=extend_schema(summary="Logic rules", responses={200: RuleSerializer(many=True), **error_responses(400)}),
    retrieve=extend_schema(summary="One rule", responses={200: RuleSerializer, **error_responses(404)}),
    create=extend_schema(
        summary="Create a rule",
        description="Checked whole by the model (docs/logic.md): each refusal is a message under its field.",
        responses={201: RuleSerializer, **error_responses(400, 403, 409)},
    ),
    update=extend_schema(
        summary="Replace a rule", responses={200: RuleSerializer, **error_responses(400, 403, 404, 409)}
    ),
    partial_update=extend_schema(
        summary="Change a rule", responses={200: RuleSerializer, **error_responses(400, 403, 404, 409)}
    ),
    destroy=extend_schema(summary="Delete a rule", responses={204: None, **error_responses(403, 404)}),
)
class RuleViewSet(LookupFirstMixin, LookupMixin, SiteScopedMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Rules of the caller's sites: read for every logged-in user, changed with the rule permissions (engineers)."""

    queryset = Rule.objects.order_by("name")
    serializer_class = RuleSerializer
    permission_classes = [ModelPermissions]
    what = "rule"

    def get_permissions(self) -> list[Any]:
        if self.action in ("enable", "disable"):
            return [permission("logic.change_rule", f"{self.action} rules")()]
        return super().get_permissions()

    def _switch(self, request: Request, enabled: bool) -> Response:
        with transaction.atomic():
            rule = self.get_object()
            if rule.enabled != enabled:
                rule.enabled = enabled
                rule.point_scope = sites.points_in_sites(self.site_ids())
                try:
                    rule.save()  # checked again; recorded in the audit trail as a change of "enabled"
                except DjangoValidationError as exc:
                    raise self.invalid(exc) from exc
        return Response(RuleSerializer(rule).data)

    @extend_schema(
        operation_id="rules_enable",
        summary="Enable a rule",
        description="Checks the rule again (a slot or a cycle may have been taken since it was disabled).",
        request=None,
        responses={200: RuleSerializer, **error_responses(400, 403, 404)},
    )
    def enable(self, request: Request, pk: str) -> Response:
        return self._switch(request, True)

    @extend_schema(
        operation_id="rules_disable",
        summary="Disable a rule",
        description="The engine stops running it; what it commanded stays in its slot.",
        request=None,
        responses={200: RuleSerializer, **error_responses(403, 404)},
    )
    def disable(self, request: Request, pk: str) -> Response:
        return self._switch(request, False)

    @extend_schema(
        operation_id="rules_live",
        summary="Rules with their live state, inputs and outputs",
        description=(
            "Each rule (or those named) with its state from the engine's process image and the live values of "
            "the points it reads and writes. When the engine does not answer, `state` is null and `live_problem` "
            "says why."
        ),
        parameters=[LiveQuerySerializer],
        responses={200: LiveRulesSerializer, **error_responses(400)},
    )
    def live(self, request: Request) -> Response:
        query = parse_query(request, LiveQuerySerializer)
        rules = list(self.get_queryset())
        if query.get("rule"):
            rules = [rule for rule in rules if rule.name in set(query["rule"])]
        # a rule names only its own site's points when saved, but a device may have moved to another site since:
        # the values shown are of the caller's points only
        visible = sites.visible_point_names(self.site_ids())
        wanted: list[str] = []
        for rule in rules:
            wanted += [ENTRY_PREFIX + rule.name, *rule.input_points(), *rule.output_names()]
        entries, problem = live_entries(list(dict.fromkeys(wanted)))
        entries = entries or {}
        answer = []
        for rule in rules:
            names = [
                name
                for name in dict.fromkeys([*rule.input_points(), *rule.output_names()])
                if visible is None or name in visible
            ]
            answer.append(
                {
                    "name": rule.name,
                    "enabled": rule.enabled,
                    "kind": rule.kind,
                    "state": rule_state(entries.get(ENTRY_PREFIX + rule.name), rule.output_names()),
                    "points": {
                        name: {key: entries[name][key] for key in ("value", "quality", "time")}
                        for name in names
                        if name in entries
                    },
                }
            )
        response = Response({"rules": answer, "live_problem": problem})
        response["Cache-Control"] = "no-store"
        return response
