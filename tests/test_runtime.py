"""training/runtime.py's XLA:CPU flags: added before a backend starts, never over the user's, and
not at all with TRANSFER_JAX_CPU_FLAGS=0."""

from transfer_jax.training import runtime

FLAG = runtime.CPU_XLA_FLAGS[0]


def test_cpu_flags_are_added_kept_or_left_out(monkeypatch):
  monkeypatch.setattr(runtime.xla_bridge, 'backends_are_initialized', lambda: False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  monkeypatch.delenv('TRANSFER_JAX_CPU_FLAGS', raising=False)
  assert runtime.set_cpu_xla_flags() == [FLAG]
  assert runtime.os.environ['XLA_FLAGS'] == f'--xla_force_host_platform_device_count=2 {FLAG}'

  name = FLAG.split('=', 1)[0]
  monkeypatch.setenv('XLA_FLAGS', f'{name}=default')   # The user's value wins.
  assert runtime.set_cpu_xla_flags() == []
  assert runtime.os.environ['XLA_FLAGS'] == f'{name}=default'

  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setenv('TRANSFER_JAX_CPU_FLAGS', '0')
  assert runtime.set_cpu_xla_flags() == []
  assert runtime.os.environ['XLA_FLAGS'] == ''
