"""The rules a report reads a run at, on hand-made evaluation records."""

from transfer_jax import report

TABLE = {**report.DEFAULT_TABLE, 'target_test_every': 2500}
RECORDS = [  # step, target test accuracy, source validation criterion
    {'step': 500, 'target/test/accuracy': 0.99, 'select/source_val': 0.5},
    {'step': 2500, 'target/test/accuracy': 0.80, 'select/source_val': 0.9},
    {'step': 4000, 'target/test/accuracy': 0.95, 'select/source_val': 0.7},
    {'step': 5000, 'target/test/accuracy': 0.85, 'select/source_val': 0.6},
    {'step': 7500, 'target/test/accuracy': 0.83, 'select/source_val': 0.8},
]
SUMMARY = {'final': {'target/test/accuracy': 0.83}}


def test_target_test_picks_the_best_test_accuracy_at_epoch_boundaries_only():
  # 0.99 (step 500) and 0.95 (step 4000) are not multiples of 2500: the best boundary is 5000.
  record = report.select_record(report.TARGET_TEST, RECORDS, SUMMARY, TABLE)
  assert record['step'] == 5000 and record['target/test/accuracy'] == 0.85


def test_other_rules_ignore_test_accuracy():
  assert report.select_record('source_val', RECORDS, SUMMARY, TABLE)['step'] == 2500
  assert report.select_record('last', RECORDS, SUMMARY, TABLE) is SUMMARY['final']
  no_boundary = [r for r in RECORDS if r['step'] % 2500]
  assert report.select_record(report.TARGET_TEST, no_boundary, SUMMARY, TABLE) is None
