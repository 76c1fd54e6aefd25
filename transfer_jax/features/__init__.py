"""Feature extraction and linear probes: how good are a frozen extractor's features, per domain?

`probe_and_report(config, workdir)` (the command `python -m transfer_jax.probe`) extracts the
backbone features of `config.init_from`'s model for every split of both domains (cached under
WORKDIR/features/, see `extract`), fits a ridge and a logistic-regression probe on the labelled
source training data with the L2 strength chosen on held-out source data (`probes`), and writes
their source and target accuracies to WORKDIR/probe.json. `raw=True` probes the model inputs.

A frozen backbone with a *trained* linear or MLP head needs no code here: it is the training
loop with `config.optimizer.freeze='backbone/.*'` (frozen parameters keep no optimizer state and
never move), `config.init_from.path` the pretrained run, `config.model.classifier_hidden=()`
for a linear head or `(256,)` for an MLP head, and `init_from.skip='params/classifier/.*'` for
a fresh head; `config.model.batch_norm='frozen'` also keeps the backbone's BatchNorm statistics
and dropout in inference mode. configs/usps_finetune.py:recipe=head_only is this recipe.
"""

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from transfer_jax.features import extract, probes
from transfer_jax.training import workdir as workdir_lib

PROBE_FILE = 'probe.json'
VAL_FRACTION = 0.2  # Of source train, held out to choose the L2 strength when there is no val.


def probe_and_report(config: ml_collections.ConfigDict, workdir: str, raw: bool = False,
                     cache_dir: str = '', mesh: Mesh | None = None) -> dict[str, Any]:
  """Extracts (or reads) the features, fits and selects both probes, writes WORKDIR/probe.json
  and prints a table; returns what it wrote."""
  start = time.perf_counter()
  workdir = os.path.abspath(workdir)
  cache_dir = os.path.abspath(cache_dir or os.path.join(workdir, 'features'))
  features, num_classes = extract.extract_all(config, cache_dir, raw, mesh)
  train, val = source_train_and_val(features, config.data.split_seed)
  reported = [name for name in ('source/test', 'target/test', 'target/oracle_val')
              if name in features]
  results = {}
  for kind in probes.PROBES:
    selected = probes.select(kind, train, val, num_classes)
    results[kind] = {
        'l2': selected.l2,
        'source/val/accuracy': selected.val_accuracy,
        **{f'{name}/accuracy': selected.probe.accuracy(features[name].features,
                                                       features[name].labels)
           for name in reported},
        'grid': {f'{l2:g}': acc for l2, acc in selected.grid.items()},
    }
  report = {
      'extractor': 'raw inputs' if raw else config.init_from.path,
      'features': {name: {'file': os.path.relpath(f.file, workdir), 'cached': f.cached,
                          'shape': list(f.features.shape)} for name, f in features.items()},
      'source_val': ('source/val' if 'source/val' in features
                     else f'{VAL_FRACTION:g} of source/train (split_seed)'),
      'probes': results,
      'wall_s': round(time.perf_counter() - start, 3),
      'config': workdir_lib.config_to_dict(config),
      'git_commit': workdir_lib.git_commit(),
  }
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, PROBE_FILE), 'w') as f:
      json.dump(report, f, indent=2)
    print(format_table(results, reported))
  return report


def source_train_and_val(features: dict[str, extract.Features],
                         split_seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """The source rows the probes fit on, and the held-out source rows that choose L2: the
  source 'val' split if the config has one, else VAL_FRACTION of source train."""
  train = features['source/train']
  if 'source/val' in features:
    val = features['source/val']
    return (train.features, train.labels), (val.features, val.labels)
  order = np.random.default_rng(split_seed).permutation(len(train.labels))
  held = np.sort(order[:int(round(len(order) * VAL_FRACTION))])
  kept = np.sort(order[len(held):])
  return ((train.features[kept], train.labels[kept]),
          (train.features[held], train.labels[held]))


def format_table(results: dict[str, dict[str, Any]], reported: list[str]) -> str:
  columns = ['source/val', *reported]
  lines = ['probe     l2      ' + '  '.join(f'{c:>16}' for c in columns)]
  for kind, result in results.items():
    accuracies = '  '.join(f'{100 * result[f"{c}/accuracy"]:>16.1f}' for c in columns)
    lines.append(f'{kind:<9} {result["l2"]:<7.0e} {accuracies}')
  return '\n'.join(lines)


__all__ = ['PROBE_FILE', 'extract', 'probe_and_report', 'probes']
