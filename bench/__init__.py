"""kefta's benchmarks: run them with ``python -m bench.run``."""
