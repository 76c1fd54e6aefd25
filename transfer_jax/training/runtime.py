"""Process-wide setup before the first compilation: XLA:CPU flags, compilation cache, logs."""

import contextlib
import logging as std_logging
import os
import signal
import sys
import threading

import jax
import ml_collections
from absl import logging
from jax._src import xla_bridge  # backends_are_initialized has no public alias.

from transfer_jax.errors import UserError

# XLA:CPU options the training step is faster with (python -m transfer_jax.bench.dann_step).
# jaxlib 0.10.2 gives convolutions to YNNPACK by default; Eigen's run the DANN LeNet's training
# step 1.8x faster on 2 cores (37 -> 20 ms) and 1.2x on one. YNNPACK keeps the matrix products.
# Compilations for GPU or TPU are not affected.
CPU_XLA_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)


def setup(config: ml_collections.ConfigDict) -> None:
  """Sets XLA:CPU flags, joins a multi-process run if configured, turns on the cache, sets logs."""
  set_cpu_xla_flags()
  initialize_distributed(config)
  if config.compilation_cache_dir:
    enable_compilation_cache(os.path.expanduser(config.compilation_cache_dir))
  # On a terminal the progress bar shows the metrics; elsewhere CLU's LoggingWriter prints them.
  logging.set_verbosity(logging.WARNING if sys.stderr.isatty() else logging.INFO)
  quiet_orbax()


def set_cpu_xla_flags(flags: tuple[str, ...] = CPU_XLA_FLAGS) -> list[str]:
  """Appends `flags` to XLA_FLAGS before JAX starts a backend; returns the ones it added.

  A flag the user already set in XLA_FLAGS keeps the user's value; TRANSFER_JAX_CPU_FLAGS=0 adds
  none (for a jaxlib whose XLA no longer knows one: XLA refuses unknown flags on every backend).
  XLA reads XLA_FLAGS once, when the first backend starts, so later calls only warn.
  """
  if os.environ.get('TRANSFER_JAX_CPU_FLAGS', '1') == '0':
    return []
  current = os.environ.get('XLA_FLAGS', '')
  missing = [f for f in flags if f.split('=', 1)[0] not in current]
  if not missing:
    return []
  if xla_bridge.backends_are_initialized():
    logging.warning('JAX already started its backends; XLA flags %s are not applied', missing)
    return []
  os.environ['XLA_FLAGS'] = ' '.join([current, *missing]).strip()
  return missing


# At import too, before JAX starts a backend: code that imports this module (the tests'
# conftest, the experiments) then compiles exactly as `python -m transfer_jax.main` does.
set_cpu_xla_flags()


def _not_orbax_info(record: std_logging.LogRecord) -> bool:
  return record.levelno >= std_logging.WARNING or 'orbax' not in record.pathname


def quiet_orbax() -> None:
  """Drops orbax's INFO lines (a dozen per checkpoint); its warnings and errors still show."""
  absl_logger = std_logging.getLogger('absl')
  if _not_orbax_info not in absl_logger.filters:
    absl_logger.addFilter(_not_orbax_info)


def enable_compilation_cache(cache_dir: str, min_compile_seconds: float = 0.0) -> None:
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_seconds)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def initialize_distributed(config: ml_collections.ConfigDict) -> bool:
  """Calls `jax.distributed.initialize` for a multi-process run; returns whether it did.

  The coordinator comes from `config.distributed` if set, else from the environment:
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (any launcher), or a Slurm
  allocation of several tasks (SLURM_NTASKS > 1), which JAX detects by itself. Single-process
  runs need none of these.
  """
  if jax.distributed.is_initialized():
    return True
  dist = config.distributed
  address = dist.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if address:
    num_processes = dist.num_processes or int(os.environ.get('JAX_NUM_PROCESSES', 0))
    process_id = dist.process_id
    if process_id < 0:
      process_id = int(os.environ.get('JAX_PROCESS_ID', -1))
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(f'a multi-process run at {address} needs num_processes >= 1 and 0 <= '
                      f'process_id < num_processes (got {num_processes}, {process_id}); set '
                      'JAX_NUM_PROCESSES and JAX_PROCESS_ID or config.distributed')
    jax.distributed.initialize(address, num_processes, process_id)
    return True
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    jax.distributed.initialize()  # JAX reads the Slurm environment.
    return True
  return False


class Interrupted(Exception):
  """SIGTERM or SIGINT stopped the run after a step, with a checkpoint at that step."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum


STOP: dict[str, int | None] = {'signum': None}   # The signal that asked the loop to stop.


@contextlib.contextmanager
def stop_on_signals():
  """While training: the first SIGTERM or SIGINT sets STOP['signum'], and the loop stops after
  its current step; a second one acts as usual (SIGINT: KeyboardInterrupt, SIGTERM: the process
  ends). Outside the main thread (signals cannot be handled there) nothing changes."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handler(signum, frame):
    STOP['signum'] = signum
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                  else signal.SIG_DFL)
    logging.warning('%s: finishing the current step, then checkpointing and stopping',
                    signal.Signals(signum).name)

  STOP['signum'] = None
  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for signum, old in previous.items():
      signal.signal(signum, old)
    STOP['signum'] = None
