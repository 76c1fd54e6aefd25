"""Shared helpers of the benchmarks: timing, and the JSON line each benchmark prints."""

import json
import statistics
import time
from collections.abc import Callable


def median_rate(run: Callable[[int], None], count: int, repeats: int) -> tuple[float, list[float]]:
  """Median of `repeats` timings of `run(count)`, as calls per second (and each repeat's rate)."""
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(count)
    rates.append(count / (time.perf_counter() - start))
  return statistics.median(rates), rates


def report(record: dict) -> None:
  print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}),
        flush=True)
