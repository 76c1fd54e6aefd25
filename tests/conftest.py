"""Test setup: 8 simulated CPU devices and a shared persistent compilation cache.

XLA_FLAGS must be set before jax is imported, so it is set here, at conftest import time.
Tests that want one device build a one-device mesh; everything else runs on all 8.
"""

import os
import tempfile

# The 8 simulated devices are threads: on a loaded 2-core machine one of them can miss a
# collective's 40 s rendezvous and XLA aborts the process; a longer timeout keeps the suite alive.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8'
                           ' --xla_cpu_collective_call_terminate_timeout_seconds=1200'
                           ' --xla_cpu_collective_timeout_seconds=1200').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402
import pytest  # noqa: E402

from transfer_jax import config_lib  # noqa: E402
from transfer_jax.training import runtime  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Prepared TFDS files of the tests go to a fresh folder per test run, never to
# ~/tensorflow_datasets: one folder for all pytest-xdist workers of a run (each real dataset is
# prepared once, the workers taking turns on builders.prepare's lock), else one per session.
_XDIST_RUN = os.environ.get('PYTEST_XDIST_TESTRUNUID', '')
if _XDIST_RUN:
  TFDS_DIR = os.path.join(tempfile.gettempdir(), f'transfer_jax_tfds_{_XDIST_RUN}')
  os.makedirs(TFDS_DIR, exist_ok=True)
else:
  TFDS_DIR = tempfile.mkdtemp(prefix='transfer_jax_tfds_')
CACHE_DIR = os.path.join(ROOT, '.pytest_cache', 'xla')
runtime.enable_compilation_cache(CACHE_DIR)
runtime.quiet_orbax()


def tiny_digits(arg: str = '', **overrides):
  """configs/digits.py in tiny mode, with `key=value` overrides (dotted keys allowed)."""
  spec = os.path.join(ROOT, 'configs', 'digits.py') + ':' + ','.join(filter(None, ['tiny', arg]))
  config = config_lib.load_config(spec, [f'{k}={v}' for k, v in overrides.items()])
  config.unlock()
  config.compilation_cache_dir = ''  # The tests' cache is already on (above).
  config.data.data_dir = TFDS_DIR
  config.lock()
  return config


@pytest.fixture(scope='session')
def eight_devices():
  devices = jax.devices()
  assert len(devices) == 8, 'tests expect 8 simulated CPU devices (see conftest.py)'
  return devices


@pytest.fixture(autouse=True, scope='module')
def _free_compiled_programs():
  """Drops JAX's in-memory compilation caches after each test module: a session trains a few
  hundred small runs, and their executables (code mappings, memory) would otherwise pile up in
  one process. The persistent cache above makes recompiling them cheap."""
  yield
  jax.clear_caches()
