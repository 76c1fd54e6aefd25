"""The benchmarks run and print their fields (tiny sizes; the figures are not checked)."""

import pytest

from transfer_jax.bench import resnet_step


@pytest.mark.slow
def test_resnet_step_reports_positive_figures():
  records = resnet_step.main([
      '--arch', 'resnet18', '--batch_size', '2', '--image_size', '32', '--steps', '1',
      '--repeats', '1', '--rounds', '1', '--num_devices', '1', '--no_torch', '--dtype', 'bfloat16'])
  step, summary = records
  assert step['benchmark'] == 'resnet_step' and step['arch'] == 'resnet18'
  assert step['dtype'] == 'bfloat16'
  for field in ('median_ms_per_step', 'steps_per_s', 'examples_per_s', 'compile_s',
                'time_to_first_step_s', 'peak_rss_mib', 'flops_per_step',
                'achieved_gflops_per_s', 'load_1m'):
    assert step[field] is not None and step[field] > 0, (field, step)
  assert step['examples_per_s'] == step['steps_per_s'] * 2
  assert step['mfu'] is None and step['device_kind'] == 'cpu'  # No peak is known for CPUs.
  assert summary['benchmark'] == 'resnet_step_summary' and summary['jax_steps_per_s'] > 0
  assert 'ratio' not in summary  # --no_torch.


@pytest.mark.slow
def test_vectorized_benchmark_reports_both_modes_and_the_speedup():
  from conftest import TFDS_DIR
  from transfer_jax.bench import vectorized
  args = ['--config', 'configs/digits.py:tiny', '--override', f'data.data_dir={TFDS_DIR}',
          '--runs', '2', '--steps', '2', '--repeats', '1']
  summary = vectorized.main(args)
  assert summary['benchmark'] == 'vectorized_step_summary' and summary['speedup'] > 0
  summary = vectorized.main(args + ['--end_to_end', '--vary', 'trade_off'])
  assert summary['sequential_s'] > 0 and summary['vectorized_s'] > 0


def test_dann_step_benchmark_reports_flops_and_the_measured_matmul_peak(capsys):
  import json

  from transfer_jax.bench import dann_step
  summary = dann_step.main(['--steps', '1', '--repeats', '1', '--rounds', '1', '--no_torch'])
  step = json.loads(capsys.readouterr().out.strip().splitlines()[0])
  assert step['benchmark'] == 'dann_step' and step['net'] == 'dann'
  for field in ('flops_per_step', 'achieved_gflops_per_s', 'matmul_peak_gflops_per_s',
                'fraction_of_peak', 'median_ms_per_step', 'load_1m'):
    assert step[field] is not None and step[field] > 0, (field, step)
  # The DANN step on 64 + 64 images: ~2.3 GFLOP (XLA's count for the compiled step, per device:
  # the tests' 8 simulated devices each take 1/8 of the batch).
  assert 1e9 < step['flops_per_step'] * step['devices'] < 5e9, step
  ratio = step['achieved_gflops_per_s'] / step['matmul_peak_gflops_per_s']
  assert abs(ratio - step['fraction_of_peak']) < 1e-3
  assert summary['benchmark'] == 'dann_step_summary' and 'ratio' not in summary
