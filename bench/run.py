"""Run kefta's benchmarks: ``python -m bench.run [--quick] [NAME ...]``.

Names: ``kernel`` (pricing kernel, no services), ``e2e`` (worker end to end with its
baselines, scale and cost per ride), ``latency`` (fixed rates), ``profile`` (py-spy
on a backlog). No name runs all of them, in that order, in about 20 minutes on two
cores; ``--quick`` shrinks every one for a smoke run of a few minutes. Each writes
``artifacts/bench/<name>.json``; the services of ``scripts/services`` must be up.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import e2e, kernel, latency, profile
from bench.common import check_services, write_result

FULL: dict[str, dict[str, Any]] = {
    "kernel": {"count": 20_000, "repeats": 5},
    "e2e": {"count": 100_000, "repeats": 3, "old_seconds": 15.0, "scale": 2},
    "latency": {"rates": (100, 1000, 5000), "seconds": 20.0},
    "profile": {"count": 50_000, "svg": True},
}
QUICK: dict[str, dict[str, Any]] = {
    "kernel": {"count": 5_000, "repeats": 3},
    "e2e": {"count": 20_000, "repeats": 1, "old_seconds": 5.0, "scale": 1},
    "latency": {"rates": (1000,), "seconds": 10.0},
    "profile": {"count": 20_000, "svg": False},
}
RUNNERS = {
    "kernel": kernel.main,
    "e2e": e2e.main,
    "latency": latency.main,
    "profile": profile.main,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", help=", ".join(RUNNERS) + " (all if none)")
    parser.add_argument("--quick", action="store_true", help="small smoke runs")
    args = parser.parse_args(argv)
    names = args.names or list(RUNNERS)
    unknown = sorted(set(names) - set(RUNNERS))
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(unknown)}; pick from {', '.join(RUNNERS)}"
        )
    if names != ["kernel"]:
        check_services()
    options = QUICK if args.quick else FULL
    timings = {}
    for name in names:
        started = time.monotonic()
        RUNNERS[name](**options[name])
        timings[name] = time.monotonic() - started
    write_result("run", {"benchmarks": names, "quick": args.quick, "seconds": timings})


if __name__ == "__main__":
    main()
