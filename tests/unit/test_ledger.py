from __future__ import annotations

from kefta.ledger import Ledger
from kefta.sinks.base import TopicPartition

TP = TopicPartition("rides", 0)
OTHER = TopicPartition("rides", 1)


class Message:
    def __init__(self, log: list[int], offset: int) -> None:
        self.log, self.offset = log, offset

    def ack(self) -> bool:
        self.log.append(self.offset)
        return True


def test_release_acks_in_order_below_every_safe_offset() -> None:
    acked: list[int] = []
    safe = {"a": 5, "b": 3}
    ledger = Ledger([lambda tp: safe["a"], lambda tp: safe["b"]])
    for offset in range(6):
        ledger.enter(TP, offset, Message(acked, offset))

    first = ledger.release()
    safe["b"] = 6
    second = ledger.release()

    assert (first, second) == (3, 2)
    assert acked == [0, 1, 2, 3, 4]


def test_release_output_holding_nothing_does_not_block() -> None:
    acked: list[int] = []
    ledger = Ledger([lambda tp: None, lambda tp: 2])
    for offset in range(3):
        ledger.enter(TP, offset, Message(acked, offset))

    ledger.release()

    assert acked == [0, 1]


def test_forget_drops_revoked_partitions_only() -> None:
    acked: list[int] = []
    ledger = Ledger([lambda tp: 0])
    ledger.enter(TP, 0, Message(acked, 0))
    ledger.enter(OTHER, 0, Message(acked, 0))

    dropped = ledger.forget([TP])

    assert dropped == 1
    assert ledger.pending() == {OTHER: 1}
