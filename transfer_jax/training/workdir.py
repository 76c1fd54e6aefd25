"""The files of a run's workdir: config.json, summary.json, and the checks made on a rerun."""

import json
import os
import subprocess
from typing import Any

import ml_collections

from transfer_jax.errors import UserError

CONFIG_FILE, SUMMARY_FILE, METRICS_FILE = 'config.json', 'summary.json', 'metrics.jsonl'
# Keys that do not change a run's results: a resumed run may change them (e.g. more devices).
EVAL_SPLITS = ('test', 'val', 'oracle_val', 'labeled')
RUNTIME_KEYS = ('compilation_cache_dir', 'num_devices', 'eval_batch_size',
                'data.manual_dir', 'data.data_dir',   # Where the same files are found.
                'distributed.coordinator_address', 'distributed.num_processes',
                'distributed.process_id')
# Config fields added after runs may have been saved, with the value that reproduces what runs
# without them did: a saved config lacking one of them still matches that value, so upgrading the
# library keeps finished runs readable and interrupted ones resumable.
ADDED_KEYS = {
    'tasks': {}, 'selection': False, 'selection_examples': 1000,
    'method.trade_off_schedule': 'constant', 'method.cdan_randomized_dim': 0,
    'method.mmd_kernel_multipliers': [0.125, 0.25, 0.5, 1.0, 2.0], 'method.mmd_linear': False,
    'method.jan_sigma': 0.92, 'method.mcc_temperature': 2.5, 'method.mdd_margin': 4.0,
    'method.afn_delta_r': 1.0, 'method.shot_beta': 0.3, 'method.shot_refresh_every': 0,
    'method.fixmatch_threshold': 0.95, 'model.fusion_hidden': [256],
}


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def check_or_write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json; on a rerun, refuses a config that differs from the saved one."""
  path = os.path.join(workdir, CONFIG_FILE)
  new = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    changed = [k for k in differences(old, new) if k not in RUNTIME_KEYS
               and not (_lookup(old, k) == '<missing>' and k in ADDED_KEYS
                        and _lookup(new, k) == ADDED_KEYS[k])]
    if changed:
      raise UserError(f'workdir {workdir} holds a run with another config (differs in '
                      f'{", ".join(changed[:5])}); use a new --workdir to start a new run')
    return
  with open(path, 'w') as f:
    json.dump(new, f, indent=2, sort_keys=True)


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
  for key in dotted.split('.'):
    if not isinstance(tree, dict) or key not in tree:
      return '<missing>'
    tree = tree[key]
  return tree


def differences(old: Any, new: Any, prefix: str = '') -> list[str]:
  """The dotted keys whose values differ between two config dicts."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      out += differences(old.get(key, '<missing>'), new.get(key, '<missing>'), f'{prefix}{key}.')
    return out
  return [] if old == new else [prefix.rstrip('.')]


def read_summary(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_summary(workdir: str, summary: dict[str, Any]) -> None:
  path = os.path.join(workdir, SUMMARY_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)


def final_and_best(records: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
  """Last value of each eval metric, and its best value (max accuracy, min loss) with the step.

  Best values over target test data are optimistic (they select on test data) and are reported
  only as such, never used to select a model.
  """
  final, best = {}, {}
  for record in records:
    for key, value in record.items():
      parts = key.split('/')
      if len(parts) != 3 or parts[1] not in EVAL_SPLITS or parts[2] not in ('accuracy', 'loss'):
        continue
      final[key] = value
      better = max if key.endswith('accuracy') else min
      if key not in best or better(value, best[key]['value']) != best[key]['value']:
        best[key] = {'value': value, 'step': record['step']}
  return final, best


def git_commit() -> str | None:
  """The commit of the source tree this package runs from, with '+dirty' if it has changes."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ('+dirty' if dirty else '')
