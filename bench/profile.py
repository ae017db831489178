"""Where a worker's time goes: py-spy samples of ``kefta worker`` on a backlog.

A backlog of ``count`` rides is produced, one worker with both sinks starts, and once
its first priced ride appears (start-up is over) py-spy samples every thread of the
process until the whole backlog is committed. Written to ``artifacts/bench/``:

* ``profile.txt``: the share of samples per thread, per function (inclusive) and per
  function (own time), and the share per kefta stage;
* ``profile.collapsed``: the raw collapsed stacks (flamegraph.pl or speedscope
  read them);
* ``profile.svg``: a flame graph, from a second identical run, when ``svg``.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench.common import (
    ARTIFACTS,
    Offsets,
    Scratch,
    logs_dir,
    produce_messages,
    wait_for,
    write_result,
)
from bench.e2e import WORKER_TUNING
from kefta.simulator import Simulation
from kefta.testing import WorkerProcess

PY_SPY = Path(sys.executable).with_name("py-spy")

STAGES = {
    "decode (rides.decode_message)": "decode_message (kefta/rides.py)",
    "price (engine.price_rides)": "price_rides (kefta/engine.py)",
    "privacy (privacy.protector)": "protector.<locals>.<lambda> (kefta/privacy.py)",
    "send priced and dead letters": "Pipeline._send (kefta/pipeline.py)",
    "elasticsearch sink add": "ElasticsearchSink.add (kefta/sinks/elasticsearch.py)",
    "elasticsearch bulk (in flight)": "ElasticsearchSink._bulk "
    "(kefta/sinks/elasticsearch.py)",
    "lake sink add": "LakeSink.add (kefta/sinks/lake.py)",
    "lake sink close (tick)": "LakeSink._close (kefta/sinks/lake.py)",
    "Pipeline.process (all of a batch)": "Pipeline.process (kefta/pipeline.py)",
    "faust consumer: fetch to event": "Consumer._drain_messages "
    "(faust/transport/consumer.py)",
    "faust stream iteration": "Stream._c_aiter (faust/streams.py)",
    "event loop select (waiting)": "EpollSelector.select (selectors.py)",
}


async def _at_least(value: Awaitable[int], floor: int) -> bool:
    return await value >= floor


async def sample(count: int, output: Path, fmt: str) -> dict[str, Any]:
    """Produce, run a worker, record py-spy samples to ``output`` in ``fmt``."""
    scratch = Scratch("profile")
    try:
        await scratch.create_topic()
        settings = scratch.settings()
        await produce_messages(settings, Simulation(seed=1).messages(count))
        env = scratch.worker_env(lake="gcs", **WORKER_TUNING)
        worker = WorkerProcess(env, logs_dir() / f"{scratch.own}.log").start()
        async with Offsets(settings) as offsets:
            await wait_for(
                lambda: _at_least(offsets.end(scratch.priced_topic), 1), 120, "output"
            )
            arguments = ["record", "--pid", str(worker.pid), "--rate", "250"]
            arguments += ["--threads", "--format", fmt, "--output", str(output)]
            spy = await asyncio.create_subprocess_exec(
                str(PY_SPY),
                *arguments,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started, cpu = time.monotonic(), worker.cpu_seconds()
            await wait_for(
                lambda: _at_least(
                    offsets.committed(scratch.group, scratch.topic), count
                ),
                600,
                "all committed",
                every=0.25,
            )
            seconds, cpu = time.monotonic() - started, worker.cpu_seconds() - cpu
        spy.send_signal(signal.SIGINT)
        await asyncio.wait_for(spy.wait(), 60)
        worker.stop()
    finally:
        await scratch.cleanup()
    return {"seconds_sampled": seconds, "worker_cpu_seconds_sampled": cpu}


def summarize(collapsed: Path, top: int = 45) -> tuple[str, dict[str, Any]]:
    """A text report of collapsed stacks, and the per-stage shares."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        n = int(number)
        frames = stack.split(";")
        threads[re.sub(r"\(\d+\)", "", frames[0])] += n
        names = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
        total += n
    stages = {label: inclusive[key] / total for label, key in STAGES.items()}
    lines = [f"samples: {total}", "", "share per thread:"]
    lines += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common()]
    lines += ["", "share per kefta stage (inclusive):"]
    lines += [f"  {share:6.1%}  {label}" for label, share in stages.items()]
    lines += ["", f"top {top} functions, inclusive:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", f"top {top} functions, own time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines) + "\n", {"samples": total, "stages": stages}


async def run(count: int = 50_000, svg: bool = True) -> dict[str, Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    collapsed = ARTIFACTS / "profile.collapsed"
    figures = await sample(count, collapsed, "raw")
    report, shares = summarize(collapsed)
    (ARTIFACTS / "profile.txt").write_text(report)
    print(report)
    if svg:
        await sample(count, ARTIFACTS / "profile.svg", "flamegraph")
    figures |= shares | {"rides": count}
    figures["worker_cpu_us_per_ride"] = (
        figures["worker_cpu_seconds_sampled"] / count * 1e6
    )
    write_result("profile", figures)
    return figures


def main(**options: Any) -> dict[str, Any]:
    return asyncio.run(run(**options))


if __name__ == "__main__":
    main()
