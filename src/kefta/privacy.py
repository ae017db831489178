"""Protection of personal data (names and phone numbers) per output.

``keep`` writes them as received, ``drop`` writes null, ``hash`` writes a keyed
HMAC-SHA256 (truncated to 16 bytes, hex): stable for a given key, so unique clients
can still be counted, but not reversible without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final

from kefta.engine import PricedRide
from kefta.settings import Privacy

PERSONAL_FIELDS: Final = (
    "nomclient",
    "telephoneClient",
    "nomDriver",
    "telephoneDriver",
)

Protector = Callable[[Sequence[PricedRide]], list[PricedRide]]


def protector(mode: Privacy, key: bytes) -> Protector:
    """A function that applies ``mode`` to the personal fields of priced rides."""
    if mode == "keep":
        return list
    if mode == "drop":
        return lambda rides: [_replace(r, lambda _: None) for r in rides]
    return lambda rides: [_replace(r, lambda v: pseudonym(v, key)) for r in rides]


def pseudonym(value: str | None, key: bytes) -> str | None:
    """The keyed hash of ``value``; None stays None."""
    if value is None:
        return None
    return _keyed_hash(value, key)


@lru_cache(maxsize=1 << 16)
def _keyed_hash(value: str, key: bytes) -> str:
    # Every output that hashes asks for the same values: one HMAC serves them all.
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _replace(
    ride: PricedRide, change: Callable[[str | None], str | None]
) -> PricedRide:
    protected = ride.copy()
    for name in PERSONAL_FIELDS:
        protected[name] = change(ride[name])
    return protected
