"""The stamp every replicated history row carries, and the per-origin counter that issues it.

DESIGN section 7: history (event and audit log, command log; later trend
samples and the alarm journal) carries ``(origin node, epoch, origin_seq)``
so that replication, catch-up after an outage and the merge after a split
are idempotent upserts. ``origin_seq`` comes from one counter row per
origin, incremented inside the writing transaction: the row lock makes
sequence order equal commit order, so a peer that has stored everything up
to ``n`` can never later receive a row below ``n`` (gaps from rolled-back
transactions are harmless). A mutable row such as a command takes a new
stamp on every change, so the latest version travels like a new row.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, models, transaction


class OriginCounter(models.Model):
    """The last ``origin_seq`` issued on this node for one origin, and the epoch to stamp new rows with."""

    origin = models.CharField(max_length=64, unique=True)
    value = models.BigIntegerField(default=0)
    epoch = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.origin}: {self.value} (epoch {self.epoch})"


def next_stamp(origin: str | None = None) -> tuple[str, int, int]:
    """Take the next ``(origin, epoch, origin_seq)``; call inside the transaction that writes the row."""
    origin = origin or settings.BMS_NODE_NAME
    table = connection.ops.quote_name(OriginCounter._meta.db_table)
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute(
                f"UPDATE {table} SET value = value + 1 WHERE origin = %s RETURNING value, epoch",
                [origin],
            )
            row = cursor.fetchone()
            if row is not None:
                return origin, int(row[1]), int(row[0])
            OriginCounter.objects.get_or_create(origin=origin)
    raise RuntimeError(f"could not issue a history stamp for origin {origin!r}")


def next_stamps(count: int, origin: str | None = None) -> tuple[str, int, range]:
    """Take ``count`` consecutive stamps at once: ``(origin, epoch, origin_seqs)``; inside the writing transaction.

    One statement for a batch of rows (an alarm flood writes thousands of journal rows in one go)."""
    if count < 1:
        raise ValueError("at least one stamp")
    origin = origin or settings.BMS_NODE_NAME
    table = connection.ops.quote_name(OriginCounter._meta.db_table)
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute(
                f"UPDATE {table} SET value = value + %s WHERE origin = %s RETURNING value, epoch", [count, origin]
            )
            row = cursor.fetchone()
            if row is not None:
                last = int(row[0])
                return origin, int(row[1]), range(last - count + 1, last + 1)
            OriginCounter.objects.get_or_create(origin=origin)
    raise RuntimeError(f"could not issue history stamps for origin {origin!r}")


def set_epoch(epoch: int, origin: str | None = None) -> None:
    """Stamp rows written from now on with ``epoch`` (called by the role machine when the epoch moves)."""
    origin = origin or settings.BMS_NODE_NAME
    with transaction.atomic():
        counter, _ = OriginCounter.objects.select_for_update().get_or_create(origin=origin)
        if counter.epoch != epoch:
            counter.epoch = epoch
            counter.save(update_fields=["epoch"])


class HistoryRow(models.Model):
    """Abstract base of every replicated history table.

    ``NATURAL_KEY`` names the fields that identify a row on both nodes: the
    stamp itself for append-only rows; a model whose rows change over time
    (commands) names its own key and takes a new stamp per change, and may
    rank versions by what they know (:meth:`merge_rank`) before the epoch,
    origin and seq order.
    """

    NATURAL_KEY: tuple[str, ...] = ("origin", "origin_seq")
    #: fields :meth:`merge_rank` reads (a mutable row's versions are compared on them first)
    MERGE_FIELDS: tuple[str, ...] = ()
    #: a table of very many rows (trend samples): each replication round serves every other table first, so a
    #: backlog of it never holds back commands, events or notifications
    BULK: bool = False

    origin = models.CharField(max_length=64, help_text="node that wrote this row (or its latest change)")
    epoch = models.BigIntegerField(default=0, help_text="fencing epoch when it was written")
    origin_seq = models.BigIntegerField(default=0, help_text="position in its origin's history stream")

    class Meta:
        abstract = True
        constraints = [models.UniqueConstraint(fields=["origin", "origin_seq"], name="%(app_label)s_%(class)s_stamp")]

    #: rows waiting for the partner are counted exactly up to this many per table and origin (count_pending)
    COUNT_LIMIT = 20_000

    def save(self, *args, **kwargs) -> None:
        if self.origin_seq:  # a replicated row keeps the stamp it was written with
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            self.origin, self.epoch, self.origin_seq = next_stamp()
            super().save(*args, **kwargs)

    @classmethod
    def settle_replicated(cls, records: list[dict]) -> None:
        """Before ``records`` from the partner are inserted (append-only tables): make way for them if needed.

        Called in the storing transaction. A table with a unique key besides the stamp deletes the stored rows
        that an incoming one must replace, by a rule both nodes apply alike (the alarm journal); the insert
        ignores incoming rows that still clash. Nothing by default."""

    @classmethod
    def merge_rank(cls, record: dict) -> int:
        """Rank of one version of a mutable row in the merge (higher wins, before epoch and seq); 0 by default."""
        return 0

    @classmethod
    def stored_origins(cls) -> list[str]:
        """The origins this table holds rows of, in order (replication asks on every round).

        One descent of the stamp's ``(origin, origin_seq)`` index per origin (a "loose index scan" by a
        recursive query), whatever the table's size: ``SELECT DISTINCT origin`` read the whole index, on every
        round, of tables that only grow (events, commands, audit; billions of trend samples)."""
        table = connection.ops.quote_name(cls._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH RECURSIVE o(origin) AS (SELECT MIN(origin) FROM {table} UNION ALL "
                f"SELECT (SELECT MIN(t.origin) FROM {table} t WHERE t.origin > o.origin) FROM o "
                "WHERE o.origin IS NOT NULL) SELECT origin FROM o WHERE origin IS NOT NULL ORDER BY origin"
            )
            return [row[0] for row in cursor.fetchall()]

    @classmethod
    def stored_tops(cls, origin: str | None = None) -> dict[str, int]:
        """Per origin (only ``origin`` if given), the highest ``origin_seq`` this table holds: its cursors.

        One index descent per origin (``GROUP BY origin`` read every row of the table, or of the origin)."""
        table = connection.ops.quote_name(cls._meta.db_table)
        tops: dict[str, int] = {}
        with connection.cursor() as cursor:
            for name in [origin] if origin is not None else cls.stored_origins():
                cursor.execute(f"SELECT MAX(origin_seq) FROM {table} WHERE origin = %s", [name])
                top = cursor.fetchone()[0]
                if top is not None:
                    tops[name] = int(top)
        return tops

    @classmethod
    def count_pending(cls, rows: models.QuerySet, origin: str, after: int) -> int:
        """How many ``rows`` (this table's rows of ``origin`` above ``after`` still to be sent) there are.

        Exact up to :attr:`COUNT_LIMIT`; beyond, :attr:`COUNT_LIMIT` (a lower bound: "at least"). Asked every
        replication round while rows wait, also while the partner is away, on the engine's database thread:
        an exact count costs as many rows as wait (57 ms at 700,000 events, every 0.2 s, before the limit).
        A table that may fall far behind (trend samples after an outage) may answer from its stamps instead,
        as long as it is exact when little waits (the backlog must reach 0 exactly)."""
        return rows[: cls.COUNT_LIMIT].count()

    @classmethod
    def store_replicated(cls, records: list[dict]) -> bool:
        """Store ``records`` from the partner in this table's own way, inside the storing transaction.

        True if it did; False (the default) leaves them to the generic idempotent upsert by ``NATURAL_KEY``
        (``redundancy.history.store_rows``). A table stored another way (trend samples: ``COPY``, partitions
        made on demand) must be just as idempotent."""
        return False


def stamped_update(queryset: models.QuerySet, **fields) -> int:
    """``queryset.update(**fields)`` for ONE row (filter by pk) that also gives it a new stamp, atomically.

    One stamp per row: several rows sharing a stamp would break the
    one-row-per-``origin_seq`` rule that catch-up relies on.
    """
    with transaction.atomic():
        origin, epoch, seq = next_stamp()
        return queryset.update(origin=origin, epoch=epoch, origin_seq=seq, **fields)
