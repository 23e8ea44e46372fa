"""The logic rules in the admin: list, search, and a reference of each kind's inputs and parameters.

Rules belong to sites: a caller restricted to some sites sees only their rules, and the points a rule names are
looked up among those sites' points only, so another site's point reads as a name that does not exist
(bms/sites/admin_scope.py, docs/sites.md).
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from bms.logic.blocks import BLOCKS, Sequencer
from bms.logic.models import Rule
from bms.sites.admin_scope import SiteRelatedFieldListFilter, SiteScopedAdminMixin
from bms.sites.models import default_site_id
from bms.sites.scope import points_in_sites, request_site_ids


def _kind_reference(kind: str) -> list[tuple[str, str, str]]:
    """(kind, inputs, parameters) of a block kind, as the admin shows them."""
    block = BLOCKS[kind]
    given = {"count": 2} if block is Sequencer else {}
    names = [item for item in fields(block.Params) if item.name not in given]
    params = ", ".join(item.name if item.default is MISSING else f"{item.name}={item.default!r}" for item in names)
    sample = block.Params(**given, **{item.name: _sample(item.name) for item in names if item.default is MISSING})
    slots = block.slots(sample)
    if block is Sequencer:  # one availability input per unit
        slots = tuple(slot for slot in slots if not slot.name.startswith("available_"))
    inputs = ", ".join(f"{slot.name} ({slot.type.value}{'' if slot.required else ', optional'})" for slot in slots)
    if block is Sequencer:
        inputs += ", available_1 .. available_N (bool, optional)"
    return [(kind, inputs, params)]


def _sample(name: str) -> float:
    return {"stage_up": 90.0, "stage_down": 30.0, "on": 1.0, "off": 0.0}.get(name, 1.0)


@admin.register(Rule)
class RuleAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "site"
    default_site = staticmethod(default_site_id)
    list_display = (
        "name",
        "site",
        "kind",
        "output",
        "priority",
        "enabled",
        "cycle_time",
        "quality_policy",
        "description",
    )
    list_filter = (("site", SiteRelatedFieldListFilter), "kind", "enabled", "quality_policy", "priority")
    list_select_related = ("site",)
    search_fields = ("name", "description", "output", "expression")
    readonly_fields = ("reference",)
    fieldsets = (
        (None, {"fields": ("name", "site", "description", "enabled", "kind")}),
        ("Inputs", {"fields": ("expression", "inputs", "params", "reference")}),
        ("Output", {"fields": ("output", "priority", "cycle_time", "output_deadband")}),
        ("Bad inputs", {"fields": ("quality_policy", "fallback_value")}),
    )

    def get_form(self, request: HttpRequest, obj: Rule | None = None, change: bool = False, **kwargs: Any) -> type:
        base: type[ModelForm] = super().get_form(request, obj, change=change, **kwargs)
        scope = points_in_sites(request_site_ids(request))

        class ScopedRuleForm(base):  # type: ignore[misc, valid-type]
            """The rule's checks look its point names up among the caller's sites' points only."""

            def __init__(self, *args: Any, **form_kwargs: Any) -> None:
                super().__init__(*args, **form_kwargs)
                self.instance.point_scope = scope

        return ScopedRuleForm

    @admin.display(description="block reference")
    def reference(self, obj: Rule | None) -> str:
        rows = [row for kind in BLOCKS for row in _kind_reference(kind)]
        body = format_html_join("", "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>", rows)
        return format_html(
            "<table><tr><th>kind</th><th>inputs</th><th>parameters (default)</th></tr>{}</table>"
            "<p>Expressions: points as <code>{{name}}</code>; see docs/logic.md.</p>",
            body,
        )
