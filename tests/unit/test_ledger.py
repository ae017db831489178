from __future__ import annotations

import pytest

from kefta.errors import OffsetRewind
from kefta.ledger import Ledger
from kefta.sinks.base import TopicPartition

TP = TopicPartition("rides", 0)
OTHER = TopicPartition("rides", 1)


def test_commit_point_is_lowest_safe_offset_of_every_output() -> None:
    safe: dict[str, int | None] = {"es": 5, "lake": 3}
    ledger = Ledger([lambda tp: safe["es"], lambda tp: safe["lake"]])
    ledger.read({TP: 10})

    first = ledger.commit_points()
    ledger.committed(first)
    safe["lake"] = None
    second = ledger.commit_points()

    assert first == {TP: 3}
    assert second == {TP: 5}


def test_commit_point_is_read_offset_when_outputs_hold_nothing() -> None:
    ledger = Ledger([lambda tp: None])
    ledger.read({TP: 7, OTHER: 2})

    assert ledger.commit_points() == {TP: 7, OTHER: 2}


def test_commit_points_skip_partitions_that_did_not_move() -> None:
    ledger = Ledger([lambda tp: None])
    ledger.read({TP: 7})
    ledger.committed(ledger.commit_points())

    assert ledger.commit_points() == {}
    assert ledger.uncommitted() == {TP: 0}


def test_forget_drops_revoked_partitions_only() -> None:
    ledger = Ledger()
    ledger.read({TP: 4, OTHER: 9})

    ledger.forget([TP])

    assert ledger.commit_points() == {OTHER: 9}


def test_uncommitted_counts_from_where_consumption_resumed() -> None:
    ledger = Ledger([lambda tp: 100])
    ledger.read({TP: 150}, first={TP: 90})
    ledger.read({TP: 200}, first={TP: 150})

    assert ledger.uncommitted() == {TP: 110}
    assert ledger.commit_points() == {TP: 100}


def test_a_batch_that_goes_back_behind_the_read_offset_is_refused() -> None:
    ledger = Ledger([lambda tp: None])
    ledger.read({TP: 10}, {TP: 0})

    with pytest.raises(OffsetRewind, match=r"rides/0 .* offset 4 after 10"):
        ledger.read({TP: 12}, {TP: 4})
    ledger.read({TP: 12, OTHER: 3}, {TP: 10, OTHER: 0})

    assert ledger.commit_points() == {TP: 12, OTHER: 3}


def test_a_revoked_partition_may_be_read_again_from_its_last_commit() -> None:
    ledger = Ledger([lambda tp: None])
    ledger.read({TP: 10}, {TP: 0})

    ledger.forget([TP])
    ledger.read({TP: 6}, {TP: 0})

    assert ledger.commit_points() == {TP: 6}
