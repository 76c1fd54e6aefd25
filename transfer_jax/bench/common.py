"""Shared helpers of the benchmarks: timing, memory, and the JSON line each benchmark prints."""

import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable

IMPORTED = time.time()  # The fallback of process_start_time.


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


def process_start_time() -> float:
  """When this process started (Linux /proc), else when this module was imported."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/stat') as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
    return boot + start_ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, StopIteration):
    return IMPORTED


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux.


def run_child(command: list[str]) -> tuple[str, float | None]:
  """Runs `command` to completion; returns its stdout and its own peak RSS in MiB (or None).

  getrusage(RUSAGE_CHILDREN) would count this (large) process, which the child starts as; the
  child's own high-water mark is in /proc while it runs.
  """
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  peak_kib = 0
  while process.poll() is None:
    peak_kib = max(peak_kib, _high_water_kib(process.pid))
    time.sleep(0.2)
  stdout, stderr = process.communicate()
  if process.returncode:
    raise SystemExit(f'{" ".join(command[:3])} failed:\n{stderr[-2000:]}')
  return stdout, peak_kib / 1024 or None


def _high_water_kib(pid: int) -> int:
  try:
    with open(f'/proc/{pid}/status') as f:
      return next((int(line.split()[1]) for line in f if line.startswith('VmHWM:')), 0)
  except OSError:
    return 0


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
  """This machine's fp32 matmul rate now (GFLOP/s): the best of `repeats` jitted size^3
  products, the ceiling a compute-bound step is compared against in the same run."""
  # Imported here: bench.first_step imports this module before its child times the imports.
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  product = jax.jit(jnp.matmul)
  product(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    product(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best / 1e9
