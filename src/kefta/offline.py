"""``kefta price``: the worker's decoding and pricing on files, without a broker."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import orjson

from kefta.engine import price_rides
from kefta.pricing import load_tariff
from kefta.rides import Rejection, RideRequest, Source, decode_message, split_messages


def price_streams(
    sources: Iterable[BinaryIO], tariff_path: Path | None, out: BinaryIO, err: BinaryIO
) -> int:
    """Price every message of ``sources``; returns the number of rejections."""
    tariff = load_tariff(tariff_path)
    rejected = 0
    for stream in sources:
        name = getattr(stream, "name", "<stdin>")
        name = "<stdin>" if isinstance(name, int) else str(name)
        for number, message in enumerate(split_messages(stream.read())):
            results = decode_message(message, Source(name, 0, number))
            rides = [r for r in results if isinstance(r, RideRequest)]
            for ride in price_rides(rides, tariff):
                out.write(orjson.dumps(ride, option=orjson.OPT_APPEND_NEWLINE))
            for rejection in (r for r in results if isinstance(r, Rejection)):
                err.write(_rejection_line(rejection))
                rejected += 1
    out.flush()
    return rejected


def _rejection_line(rejection: Rejection) -> bytes:
    return orjson.dumps(
        {
            "reason": rejection.reason,
            "error_class": rejection.error_class,
            "source": rejection.source.topic,
            "message": rejection.source.offset,
            "ride_index": rejection.index,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
