"""Reading a sweep file (see `transfer_jax.sweep`): its runs, their workdir names and labels,
the waves their `needs` put them in, and the `--only` subset. `grid` and `random_search` build
a sweep file's runs; `parse_overrides` reads the `--override` flags of the sweep and the
report."""

import hashlib
import importlib.util
import itertools
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from transfer_jax.errors import UserError

RUN_KEYS = ('arg', 'overrides', 'config', 'labels', 'name', 'needs', 'before')
# Where files are found, not what a run computes: left out of the run names' hash.
LOCATION_KEYS = ('data.manual_dir', 'data.data_dir', 'compilation_cache_dir')


def grid(**axes: Any) -> Iterator[dict[str, Any]]:
  """Every combination of the values of `axes` (name -> list), as {name: value} dicts."""
  names = list(axes)
  for values in itertools.product(*(axes[name] for name in names)):
    yield dict(zip(names, values, strict=True))


def random_search(num: int, seed: int = 0, **distributions: Any) -> Iterator[dict[str, Any]]:
  """`num` draws; a distribution is a list (uniform choice) or ('log', low, high) / ('uniform',
  low, high). The same seed gives the same draws, so a rerun finds the same workdirs."""
  rng = np.random.default_rng(seed)
  for _ in range(num):
    draw = {}
    for name, dist in distributions.items():
      if isinstance(dist, tuple) and dist and dist[0] in ('log', 'uniform'):
        kind, low, high = dist
        value = (float(np.exp(rng.uniform(np.log(low), np.log(high)))) if kind == 'log'
                 else float(rng.uniform(low, high)))
        draw[name] = float(f'{value:.4g}')
      else:
        draw[name] = dist[int(rng.integers(len(dist)))]
    yield draw


def load_sweep(path: str, extra_overrides: dict[str, Any] | None = None,
               workdir: str | None = None) -> tuple[Any, list[dict[str, Any]]]:
  """The sweep module and its runs, each {'arg', 'overrides', 'config', 'labels', 'name',
  'needs', 'before', 'wave'}; `extra_overrides` are added to every run (and to its name). With
  `workdir`, a run that exists there under its name of before the label-based names keeps it."""
  if not os.path.isfile(path):
    raise UserError(f'no sweep file {path!r}; give the path of a sweep file, e.g. '
                    'experiments/t1_mnist_usps_tllib.py')
  spec = importlib.util.spec_from_file_location('sweep_file', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'runs'):
    raise UserError(f'{path} defines no runs(); a sweep file yields one dict per run')
  runs = []
  for run in module.runs():
    unknown = set(run) - set(RUN_KEYS)
    if unknown:
      raise UserError(f'{path}: a run has unknown keys {sorted(unknown)}; use '
                      + ', '.join(RUN_KEYS))
    config = run.get('config', getattr(module, 'CONFIG', None))
    if not config:
      raise UserError(f'{path}: set CONFIG = "configs/digits.py" or give each run a config')
    overrides = {**run.get('overrides', {}), **(extra_overrides or {})}
    labels = dict(run.get('labels', {}))
    name = run.get('name') or run_name(config, run.get('arg', ''), overrides, labels)
    if workdir is not None and not run.get('name'):
      legacy = legacy_run_name(config, run.get('arg', ''), overrides)
      if (not os.path.isdir(os.path.join(workdir, name))
          and os.path.isdir(os.path.join(workdir, legacy))):
        name = legacy
    if not re.fullmatch(r'[A-Za-z0-9_.=+-]+', name) or name.startswith('.'):
      raise UserError(f'{path}: run name {name!r} is not a plain folder name; use letters, '
                      'digits and _.=+-')
    if run.get('before') is not None and not callable(run['before']):
      raise UserError(f'{path}: run {name}: before must be a function (run_dir, sweep_workdir)')
    runs.append({'config': config, 'arg': run.get('arg', ''), 'overrides': overrides,
                 'labels': labels,   # For reports and the readable part of the name.
                 'name': name, 'needs': list(run.get('needs', ())),
                 'before': run.get('before')})
  names = [r['name'] for r in runs]
  if len(set(names)) != len(names):
    duplicate = next(n for n in names if names.count(n) > 1)
    raise UserError(f'{path} yields the run {duplicate} twice; every run must differ')
  _assign_waves(path, runs)
  return module, runs


def _assign_waves(path: str, runs: list[dict[str, Any]]) -> None:
  """Sets each run's 'wave': 0 without needs, else one more than the latest of its needs."""
  by_name = {run['name']: run for run in runs}
  for run in runs:
    for need in run['needs']:
      if need not in by_name:
        raise UserError(f'{path}: run {run["name"]} needs {need!r}, which the sweep does not '
                        "yield; give the needed run a fixed 'name' and use it")

  def wave(run, chain):
    if 'wave' not in run:
      if run['name'] in chain:
        raise UserError(f'{path}: runs need each other in a cycle: '
                        + ' -> '.join([*chain, run['name']]))
      run['wave'] = 1 + max((wave(by_name[n], (*chain, run['name'])) for n in run['needs']),
                            default=-1)
    return run['wave']

  for run in runs:
    wave(run, ())


def run_name(config: str, arg: str, overrides: dict[str, Any],
             labels: dict[str, Any] | None = None) -> str:
  """A readable, deterministic workdir name: the labels (else the arg and overrides), then a
  hash of the config, arg and overrides without the data locations (LOCATION_KEYS)."""
  identity = sorted((k, v) for k, v in overrides.items() if k not in LOCATION_KEYS)
  digest = hashlib.sha1(json.dumps([config, arg, identity], default=str).encode()).hexdigest()[:8]
  if labels:
    readable = '_'.join(f'{k}={v}' for k, v in labels.items()).replace('→', '2')
    readable = re.sub(r'[^A-Za-z0-9_.=+-]+', '', readable)[:80].strip('_') or 'run'
    return f'{readable}-{digest}'
  return _readable(arg, overrides) + f'-{digest}'


def legacy_run_name(config: str, arg: str, overrides: dict[str, Any]) -> str:
  """The name runs had before labels named them (the hash covered the data locations too)."""
  canonical = json.dumps([config, arg, sorted(overrides.items())], default=str)
  return _readable(arg, overrides) + '-' + hashlib.sha1(canonical.encode()).hexdigest()[:8]


def _readable(arg: str, overrides: dict[str, Any]) -> str:
  # Readable part: the arg, the seed, then the other overrides by their last key component
  # (paths are left out: they are in the hash).
  shown = sorted(overrides.items(), key=lambda item: (item[0] != 'seed', item[0]))
  readable = '_'.join([arg.replace(',', '_')] + [f'{k.rsplit(".", 1)[-1]}={v}' for k, v in shown
                                                 if not k.endswith(('_dir', '.path'))])
  return re.sub(r'[^A-Za-z0-9_.=+-]+', '', readable)[:80].strip('_') or 'run'


def run_labels(run: dict[str, Any]) -> dict[str, Any]:
  """What a run is known by (tables, --only): its arg's `key=value` items, its overrides, and
  the `labels` it yields, later ones winning."""
  labels = {}
  for item in filter(None, run['arg'].split(',')):
    key, _, value = item.partition('=')
    labels[key] = value if value else True
  labels.update(run['overrides'])
  labels.update(run.get('labels', {}))
  return labels


def select_runs(runs: list[dict[str, Any]], only: list[str]) -> list[dict[str, Any]]:
  """The runs whose labels match every `KEY=VALUE` of `only` (a key given twice: either
  value), with the runs they need; one-line errors for a key no run has or an empty subset."""
  wanted: dict[str, set[str]] = {}
  for item in only:
    key, sep, value = item.partition('=')
    if not sep or not key:
      raise UserError(f'--only {item!r} is not KEY=VALUE; e.g. --only method=dann')
    wanted.setdefault(key, set()).add(value)
  if not wanted:
    return runs
  all_labels = [{k: str(v) for k, v in run_labels(run).items()} for run in runs]
  known = set().union(*all_labels) if all_labels else set()
  for key in wanted:
    if key not in known:
      raise UserError(f'--only {key}=...: no run has the label {key!r}; labels are '
                      f'{", ".join(sorted(known))}')
  chosen = {run['name'] for run, labels in zip(runs, all_labels, strict=True)
            if all(labels.get(k) in values for k, values in wanted.items())}
  if not chosen:
    values = {k: sorted({labels[k] for labels in all_labels if k in labels}) for k in wanted}
    raise UserError(f'--only {" ".join(only)} matches no run; values are {values}')
  by_name = {run['name']: run for run in runs}
  pending = list(chosen)
  while pending:  # The runs a chosen run needs come along.
    for need in by_name[pending.pop()]['needs']:
      if need not in chosen:
        chosen.add(need)
        pending.append(need)
  return [run for run in runs if run['name'] in chosen]


def parse_overrides(items: list[str]) -> dict[str, Any]:
  """{key: value} from `--override key=value` flags (values stay strings: the config parses
  them)."""
  overrides = {}
  for item in items:
    key, sep, value = item.partition('=')
    if not sep or not key:
      raise UserError(f'--override {item!r} is not KEY=VALUE; e.g. --override total_steps=4')
    overrides[key] = value
  return overrides
