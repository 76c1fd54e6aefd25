"""Process-wide setup before the first compilation: compilation cache and log verbosity."""

import logging as std_logging
import os
import sys

import jax
import ml_collections
from absl import logging


def setup(config: ml_collections.ConfigDict) -> None:
  """Turns on JAX's persistent compilation cache at `config.compilation_cache_dir` (if set)."""
  cache_dir = config.get('compilation_cache_dir')
  if cache_dir:
    enable_compilation_cache(os.path.expanduser(cache_dir))
  # On a terminal the progress bar shows the metrics; elsewhere CLU's LoggingWriter prints them.
  logging.set_verbosity(logging.WARNING if sys.stderr.isatty() else logging.INFO)
  quiet_orbax()


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
