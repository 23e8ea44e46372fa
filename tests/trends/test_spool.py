"""The disk spool on its own: order, the bound with a counted loss, reopening, torn and corrupt records."""

from datetime import UTC, datetime, timedelta

import pytest

from bms.trends.spool import HEADER, ROW, Spool, SpoolInUse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def batch(number: int, size: int = 100) -> list[tuple]:
    return [
        (index, T0 + timedelta(seconds=number, microseconds=index), float(number) if index % 3 else None, index % 6)
        for index in range(size)
    ]


def drain(spool: Spool) -> list[list[tuple]]:
    records = []
    while (found := spool.peek()) is not None:
        position, rows = found
        records.append(rows)
        spool.consume(position, len(rows))
    return records


def test_batches_come_back_in_order_exactly_as_appended_also_after_reopening(tmp_path):
    spool = Spool(tmp_path, 10 * 1024 * 1024, segment_bytes=8 * 1024)
    for number in range(20):
        assert spool.append([batch(number)]) == 0
    assert spool.samples == 2000 and spool.appended == 2000
    first = spool.peek()
    spool.consume(first[0], len(first[1]))
    spool.close()
    reopened = Spool(tmp_path, 10 * 1024 * 1024, segment_bytes=8 * 1024)
    assert reopened.samples == 1900
    assert drain(reopened) == [batch(number) for number in range(1, 20)]
    assert reopened.samples == 0 and reopened.drained == 1900
    assert len(list(tmp_path.glob("*.seg"))) == 1  # drained segments are deleted; the newest stays for appends


def test_a_full_spool_drops_the_oldest_samples_and_counts_them(tmp_path):
    record = HEADER.size + 100 * ROW.size
    spool = Spool(tmp_path, 40 * record, segment_bytes=5 * record)
    dropped = sum(spool.append([batch(number)]) for number in range(100))
    assert dropped == spool.dropped > 0
    assert spool.bytes <= spool.capacity
    assert spool.samples + spool.dropped == 100 * 100
    records = drain(spool)
    kept = [rows[0][1] for rows in records]
    assert kept == sorted(kept) and records[-1] == batch(99)  # the newest are kept, in order
    assert len(records) == spool.samples + len(records)  # nothing left after the drain
    assert records[0] == batch(100 - len(records))


def test_a_torn_record_at_the_end_is_cut_off_on_opening(tmp_path):
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append([batch(1), batch(2)])
    newest = sorted(tmp_path.glob("*.seg"))[-1]
    with open(newest, "ab") as handle:
        handle.write(HEADER.pack(b"BTS1", 100, 100 * ROW.size, 0) + b"half a record")
    spool.close()
    reopened = Spool(tmp_path, 1024 * 1024)
    assert reopened.samples == 200
    reopened.append([batch(3)])
    assert drain(reopened) == [batch(1), batch(2), batch(3)]


def test_a_corrupt_record_is_skipped_and_its_samples_counted_as_lost(tmp_path):
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append([batch(1), batch(2), batch(3)])
    segment = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[HEADER.size + 10] ^= 0xFF  # a flipped bit in the first record's samples: its CRC no longer matches
    segment.write_bytes(bytes(data))
    spool.close()
    reopened = Spool(tmp_path, 1024 * 1024)
    assert drain(reopened) == [batch(2), batch(3)]
    assert reopened.dropped == 100 and reopened.samples == 0


def test_garbage_after_the_last_good_record_is_cut_off_and_counted(tmp_path):
    spool = Spool(tmp_path, 1024 * 1024)
    spool.append([batch(1)])
    segment = sorted(tmp_path.glob("*.seg"))[0]
    with open(segment, "ab") as handle:
        handle.write(b"\x00" * (10 * ROW.size))  # not a record header: garbage, not a torn append
    spool.close()
    reopened = Spool(tmp_path, 1024 * 1024)
    assert reopened.dropped == 10
    reopened.append([batch(2)])
    assert drain(reopened) == [batch(1), batch(2)]


def test_two_writers_never_share_a_spool(tmp_path):
    spool = Spool(tmp_path, 1024 * 1024)
    with pytest.raises(SpoolInUse, match="in use by another process"):
        Spool(tmp_path, 1024 * 1024)
    spool.close()
    Spool(tmp_path, 1024 * 1024).close()
