"""Errors of the warehouse wing, classified by what the caller should do.

``WarehouseError`` is the root of the wing's errors, under
``kefta.errors.KeftaError`` like every error kefta raises on purpose. Each class
says through ``retriable`` whether running the same command again, unchanged, can
succeed:

- ``TemplateError``: a ``sql/`` file or a value substituted into it is wrong. Terminal.
- ``UnsupportedStatementError``: the local back end cannot run a statement or option
  of ``sql/``. Terminal: change the SQL or use BigQuery.
- ``TrainingDataError``: the k-means input cannot be clustered (too few rows, NULL
  coordinates, a constant column). Terminal until the data is fixed.
- ``NotReadyError``: the lake has no ride yet, or no model was trained. Retriable once
  the worker wrote files or ``kefta train`` ran.
- ``BackendError``: BigQuery or DuckDB refused or failed a job; ``retriable`` depends
  on the cause (quota and server errors are, bad requests are not).
"""

from __future__ import annotations

from kefta.errors import KeftaError


class WarehouseError(KeftaError):
    """Root of every error raised by ``kefta.warehouse``."""


class TemplateError(WarehouseError):
    """A SQL template is missing, malformed, or was given an unsafe value."""


class UnsupportedStatementError(WarehouseError):
    """The local back end does not implement a statement, function or option."""


class TrainingDataError(WarehouseError):
    """The k-means training rows cannot be clustered as they are."""


class NotReadyError(WarehouseError):
    """Something the command needs does not exist yet (rides, model)."""

    retriable = True


class BackendError(WarehouseError):
    """The warehouse engine failed a job; ``retriable`` says if a retry can help."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable
