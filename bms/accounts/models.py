"""What accounts keep besides Django's users and groups: follow tokens that can no longer log anyone in."""

from __future__ import annotations

from django.db import models

from bms.history.models import HistoryRow


class VoidFollowToken(HistoryRow):
    """A follow token (``redundancy.follow``) that is void: used once, or its session logged out.

    ``key`` is the token's own id (``used``) or the digest of the session it was issued to (``logout``: every
    token of that session). History rows replicate both ways, so a logout on either node voids the session's
    tokens on the other as well. The key is unique: of two requests redeeming one token at once, one wins.
    """

    USED = "used"
    LOGOUT = "logout"

    key = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=16, choices=[(USED, "used"), (LOGOUT, "session logged out")])
    time = models.DateTimeField(auto_now_add=True)

    class Meta(HistoryRow.Meta):
        constraints = [models.UniqueConstraint(fields=["origin", "origin_seq"], name="accounts_voidfollowtoken_stamp")]

    @classmethod
    def settle_replicated(cls, records: list[dict]) -> None:
        # The same key from the partner says the same thing (void): keep the partner's row in place of ours, so
        # the incoming row is stored and the partner's cursor moves past it (an ignored row would be resent).
        keys = [record["key"] for record in records]
        cls.objects.filter(key__in=keys).delete()

    def __str__(self) -> str:
        return f"{self.reason} {self.key[:12]}…"
