"""The benchmarks run and print their fields (tiny sizes; the figures are not checked)."""

from transfer_jax.bench import resnet_step


def test_resnet_step_reports_positive_figures():
  records = resnet_step.main([
      '--arch', 'resnet18', '--batch_size', '2', '--image_size', '32', '--steps', '1',
      '--repeats', '1', '--rounds', '1', '--num_devices', '1', '--no_torch'])
  step, summary = records
  assert step['benchmark'] == 'resnet_step' and step['arch'] == 'resnet18'
  for field in ('median_ms_per_step', 'steps_per_s', 'examples_per_s', 'compile_s',
                'time_to_first_step_s', 'peak_rss_mib', 'flops_per_step',
                'achieved_gflops_per_s', 'load_1m'):
    assert step[field] is not None and step[field] > 0, (field, step)
  assert step['examples_per_s'] == step['steps_per_s'] * 2
  assert step['mfu'] is None and step['device_kind'] == 'cpu'  # No peak is known for CPUs.
  assert summary['benchmark'] == 'resnet_step_summary' and summary['jax_steps_per_s'] > 0
  assert 'ratio' not in summary  # --no_torch.


def test_vectorized_benchmark_reports_both_modes_and_the_speedup():
  from conftest import TFDS_DIR
  from transfer_jax.bench import vectorized
  args = ['--config', 'configs/digits.py:tiny', '--override', f'data.data_dir={TFDS_DIR}',
          '--runs', '2', '--steps', '2', '--repeats', '1']
  summary = vectorized.main(args)
  assert summary['benchmark'] == 'vectorized_step_summary' and summary['speedup'] > 0
  summary = vectorized.main(args + ['--end_to_end', '--vary', 'trade_off'])
  assert summary['sequential_s'] > 0 and summary['vectorized_s'] > 0
