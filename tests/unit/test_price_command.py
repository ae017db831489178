from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from kefta.cli import main

RUNNER = CliRunner()


def test_price_reference_file_prints_golden_document(
    tmp_path: Path, reference_message: bytes
) -> None:
    path = tmp_path / "ride.json"
    path.write_bytes(reference_message)

    result = RUNNER.invoke(main, ["price", str(path)])

    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert (document["distance"], document["prix_travel"]) == (944.494, 1888.99)
    assert document["locationClient"] == {"lat": 48.8566, "lon": 2.3522}
    assert document["agent_timestamp"].endswith("Z")
    assert len(document["agent_timestamp"]) == len("2024-08-02T16:09:47Z")


def test_price_ndjson_stdin_with_a_bad_line_exits_1(
    reference_message: bytes, seed_repo_message: bytes
) -> None:
    lines = [
        orjson.dumps(orjson.loads(m)) for m in (reference_message, seed_repo_message)
    ]
    stdin = b"\n".join([lines[0], b'{"data": [{"confort": "luxe"}]}', lines[1]]) + b"\n"

    result = RUNNER.invoke(main, ["price"], input=stdin)

    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 2
    rejection = orjson.loads(result.stderr)
    assert rejection["message"] == 1
    assert "data[0].confort 'luxe' is not one of" in rejection["reason"]


def test_price_only_valid_messages_exits_0(seed_repo_message: bytes) -> None:
    result = RUNNER.invoke(main, ["price"], input=seed_repo_message)

    assert result.exit_code == 0
    assert orjson.loads(result.stdout)["tier"] == "low"
    assert result.stderr == ""


def test_price_custom_tariff_applies_when_message_has_no_rate(tmp_path: Path) -> None:
    tariff = tmp_path / "tariff.toml"
    tariff.write_text(
        "".join(
            f"[tiers.{t}]\nrate_per_km = {r}\nminimum = 5\n"
            for t, r in (("low", 1), ("medium", 4), ("high", 9))
        )
    )
    message = (
        b'{"data": [{"confort": "standard", "properties-client": {"latitude": 0, '
        b'"logitude": 0}, "properties-driver": {"latitude": 0, "logitude": 0.01}}]}'
    )

    result = RUNNER.invoke(main, ["price", "--tariff", str(tariff)], input=message)

    document = orjson.loads(result.stdout)
    assert (document["rate_per_km"], document["prix_travel"]) == (4.0, 5.0)


def test_help_names_environment_variables() -> None:
    result = RUNNER.invoke(main, ["worker", "--help"])

    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "[env: KEFTA_BOOTSTRAP]" in text
    assert "[env: KEFTA_BATCH_SIZE]" in text
