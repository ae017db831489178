"""kefta's exceptions, classified by what the caller should do.

::

    KeftaError                 root of every error kefta raises on purpose
    ├── RejectedRide           terminal: the input is wrong; dead-letter it
    ├── ConfigError            terminal: a setting is wrong; fix it and restart
    ├── OffsetRewind           terminal: the stream went back; restart the worker
    └── SinkError              a destination failed
        ├── SinkUnavailable    retriable: the destination is down; wait and retry
        └── SinkRejected       terminal: the destination refused this record

``retriable`` says whether trying the same thing again can succeed.
"""

from __future__ import annotations


class KeftaError(Exception):
    """Root of kefta's errors."""

    retriable: bool = False


class RejectedRide(KeftaError):
    """A message or a ride in it failed to decode or validate.

    ``reason`` is a sentence a human can act on; it names the field, the value and
    what was expected.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(KeftaError):
    """A setting or a configuration file is invalid."""


class OffsetRewind(KeftaError):
    """A partition was read again from an earlier offset without a rebalance.

    The outputs would then hold rides the ledger does not account for; a restart
    resumes from the last commit, where outputs and ledger agree again.
    """


class SinkError(KeftaError):
    """A sink could not make records durable."""


class SinkUnavailable(SinkError):
    """The destination cannot be reached; the same write may succeed later."""

    retriable = True


class SinkRejected(SinkError):
    """The destination refused a record; retrying it will not help."""
