"""Kibana dashboards: import kefta's saved objects into a Kibana.

``dashboards/kefta.ndjson`` holds a data view on ``kefta-rides-*``, the Lens charts,
the map and the dashboard. :func:`import_dashboards` sends that file to Kibana's
``POST /api/saved_objects/_import`` (multipart, ``kbn-xsrf`` header, optionally in a
space) and returns what Kibana created, updated and refused. ``kefta dashboards
import`` is the command on top of it; :func:`register` adds it to a click group.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import click

from kefta.errors import KeftaError

log = logging.getLogger(__name__)

REPOSITORY_FILE = Path(__file__).resolve().parents[2] / "dashboards" / "kefta.ndjson"
"""The saved objects in a source checkout (or an editable install)."""
PACKAGED_FILE = "data/kefta-dashboards.ndjson"
"""Where a wheel carries the same file, when its build includes it."""


class DashboardImportError(KeftaError):
    """Kibana could not be reached, or refused the import request as a whole.

    ``retriable`` is True when the same request may succeed later (Kibana down or
    starting, answering 5xx or 429).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True)
class KibanaAuth:
    """Credentials for Kibana: an API key, or a user and password (basic auth)."""

    username: str | None = None
    password: str | None = None
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        """The Authorization header: the API key when set, else basic auth when a
        user is set, else none."""
        if self.api_key:
            return {"Authorization": f"ApiKey {self.api_key}"}
        if self.username:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}


@dataclass(frozen=True)
class SavedObject:
    """One saved object in Kibana's answer: its type, id and title."""

    type: str
    id: str
    title: str

    def __str__(self) -> str:
        named = f" ({self.title})" if self.title else ""
        return f"{self.type} {self.id}{named}"


@dataclass(frozen=True)
class ImportFailure:
    """An object Kibana refused, with the error type it gave and its detail."""

    object: SavedObject
    kind: str
    detail: str

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.object}: {self.kind}{detail}"


@dataclass(frozen=True)
class ImportReport:
    """What one import did: objects created, overwritten, and refused."""

    created: list[SavedObject] = field(default_factory=list)
    updated: list[SavedObject] = field(default_factory=list)
    errors: list[ImportFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """One line per object and a closing count, for people."""
        out = [f"created {o}" for o in self.created]
        out += [f"updated {o}" for o in self.updated]
        out += [f"error   {e}" for e in self.errors]
        out.append(
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.errors)} failed"
        )
        return out


def default_file() -> Path:
    """The bundled saved objects: the wheel's copy, else the source checkout's.

    Raises DashboardImportError when neither exists.
    """
    packaged = resources.files("kefta").joinpath(PACKAGED_FILE)
    if packaged.is_file():
        return Path(str(packaged))
    if REPOSITORY_FILE.is_file():
        return REPOSITORY_FILE
    raise DashboardImportError(
        f"no saved objects found at kefta/{PACKAGED_FILE} nor {REPOSITORY_FILE}; "
        "pass the file with --file dashboards/kefta.ndjson"
    )


def import_url(kibana_url: str, space: str | None, overwrite: bool) -> str:
    """The import endpoint, in ``space`` when given (``/s/<space>``)."""
    base = kibana_url.rstrip("/")
    prefix = f"/s/{space}" if space and space != "default" else ""
    flag = "true" if overwrite else "false"
    return f"{base}{prefix}/api/saved_objects/_import?overwrite={flag}"


async def import_dashboards(
    kibana_url: str,
    path: Path | None = None,
    *,
    space: str | None = None,
    overwrite: bool = True,
    auth: KibanaAuth | None = None,
    request_seconds: float = 60.0,
) -> ImportReport:
    """Import the saved objects of ``path`` (default: :func:`default_file`).

    Returns Kibana's verdict per object, refused ones included: a partial import is
    a report with errors, not an exception. Raises DashboardImportError when Kibana
    cannot be reached or answers the request itself with an error (bad credentials,
    unknown space, a file it cannot read).
    """
    source = path or default_file()
    url = import_url(kibana_url, space, overwrite)
    auth = auth or KibanaAuth()
    form = aiohttp.FormData()
    form.add_field(
        "file",
        source.read_bytes(),
        filename=source.name,
        content_type="application/ndjson",
    )
    headers = {"kbn-xsrf": "true", **auth.headers()}
    body = await _post(url, form, headers, request_seconds)
    report = parse_response(body)
    log.info(
        "dashboards imported url=%s file=%s created=%d updated=%d failed=%d",
        url,
        source,
        len(report.created),
        len(report.updated),
        len(report.errors),
    )
    return report


async def _post(
    url: str,
    form: aiohttp.FormData,
    headers: dict[str, str],
    seconds: float,
) -> Any:
    limit = aiohttp.ClientTimeout(total=seconds)
    try:
        async with (
            aiohttp.ClientSession(timeout=limit) as session,
            session.post(url, data=form, headers=headers) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise _refused(url, response.status, text)
            return await response.json(content_type=None)
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise DashboardImportError(
            f"cannot reach Kibana at {url} ({exc or type(exc).__name__}); check "
            "--kibana-url and that Kibana is up (GET /api/status)",
            retriable=True,
        ) from exc


def _refused(url: str, status: int, text: str) -> DashboardImportError:
    hint = {
        400: "Kibana could not read the file or the options",
        401: "the credentials were refused; set --username/--password or --api-key",
        403: "the user may not import saved objects in this space",
        404: "no such endpoint or space; check --kibana-url and --space",
        413: "the file is larger than Kibana's savedObjects.maxImportPayloadBytes",
    }.get(status, "Kibana is not ready or failed")
    return DashboardImportError(
        f"Kibana answered {status} to POST {url}: {text[:300].strip()} ({hint})",
        retriable=status == 429 or status >= 500,
    )


def parse_response(body: Any) -> ImportReport:
    """An :class:`ImportReport` from the JSON Kibana returns for an import.

    Kibana lists imported objects in ``successResults`` (``overwrite: true`` when an
    existing object was replaced) and refused ones in ``errors``.
    """
    if not isinstance(body, dict) or "success" not in body:
        raise DashboardImportError(
            f"Kibana's answer is not an import result (no 'success' key): "
            f"{str(body)[:300]}"
        )
    created: list[SavedObject] = []
    updated: list[SavedObject] = []
    for result in body.get("successResults") or []:
        target = updated if result.get("overwrite") else created
        target.append(_saved_object(result))
    errors = [_failure(e) for e in body.get("errors") or []]
    return ImportReport(created, updated, errors)


def _saved_object(result: dict[str, Any]) -> SavedObject:
    meta = result.get("meta") or {}
    title = str(result.get("title") or meta.get("title") or "")
    return SavedObject(str(result.get("type")), str(result.get("id")), title)


def _failure(error: dict[str, Any]) -> ImportFailure:
    detail = error.get("error") or {}
    kind = str(detail.get("type", "unknown"))
    if kind == "missing_references":
        missing = detail.get("references") or []
        text = "missing " + ", ".join(f"{r.get('type')} {r.get('id')}" for r in missing)
    elif kind == "conflict":
        text = "exists already; import with --overwrite to replace it"
    else:
        text = str(detail.get("message") or detail.get("reason") or "")
    return ImportFailure(_saved_object(error), kind, text)


# -- the command ----------------------------------------------------------------------


@click.group("dashboards")
def dashboards() -> None:
    """Kibana dashboards for the rides kefta indexes."""


@dashboards.command("import")
@click.option(
    "--kibana-url",
    required=True,
    envvar="KEFTA_KIBANA_URL",
    help="Kibana's base URL, e.g. http://127.0.0.1:5601 [env: KEFTA_KIBANA_URL]",
)
@click.option(
    "--space",
    envvar="KEFTA_KIBANA_SPACE",
    help="Kibana space id; the default space when unset [env: KEFTA_KIBANA_SPACE]",
)
@click.option(
    "--overwrite/--no-overwrite",
    default=True,
    show_default=True,
    help="Replace objects that exist already (same ids).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Saved objects to import [default: kefta's dashboards/kefta.ndjson]",
)
@click.option(
    "--username",
    envvar="KEFTA_KIBANA_USERNAME",
    help="Kibana basic-auth user [env: KEFTA_KIBANA_USERNAME]",
)
@click.option(
    "--password",
    envvar="KEFTA_KIBANA_PASSWORD",
    help="Kibana basic-auth password [env: KEFTA_KIBANA_PASSWORD]",
)
@click.option(
    "--api-key",
    envvar="KEFTA_KIBANA_API_KEY",
    help="Kibana API key, base64 id:key (instead of a user) "
    "[env: KEFTA_KIBANA_API_KEY]",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to keep retrying while Kibana is unreachable or starting.",
)
def import_command(
    kibana_url: str,
    space: str | None,
    overwrite: bool,
    path: Path | None,
    username: str | None,
    password: str | None,
    api_key: str | None,
    wait: float,
) -> None:
    """Import kefta's data view, charts, map and dashboard into Kibana.

    Prints one line per object (created, updated or error). Exits 0 when every
    object was imported, 1 when Kibana refused some, 2 when the import could not
    be done at all.
    """
    auth = KibanaAuth(username, password, api_key)
    try:
        report = asyncio.run(
            _import_waiting(kibana_url, path, space, overwrite, auth, wait)
        )
    except KeftaError as exc:
        click.echo(f"kefta: error: {exc}", err=True)
        sys.exit(2)
    for line in report.lines():
        click.echo(line)
    sys.exit(0 if report.ok else 1)


async def _import_waiting(
    kibana_url: str,
    path: Path | None,
    space: str | None,
    overwrite: bool,
    auth: KibanaAuth,
    wait: float,
) -> ImportReport:
    """Import, retrying retriable failures with a pause until ``wait`` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await import_dashboards(
                kibana_url, path, space=space, overwrite=overwrite, auth=auth
            )
        except DashboardImportError as exc:
            if not exc.retriable or loop.time() + 5 > deadline:
                raise
            log.warning("Kibana not ready, retrying in 5 s: %s", exc)
            await asyncio.sleep(5)


def register(group: click.Group) -> None:
    """Add the ``dashboards`` command group (with ``import``) to ``group``."""
    group.add_command(dashboards)
