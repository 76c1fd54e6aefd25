"""Figures from runs' workdirs, each written as PREFIX.png and PREFIX.pdf:

  python -m transfer_jax.plots curves WORKDIR [WORKDIR ...] [--metrics=K1,K2] [--labels=A,B]
      --output=PREFIX
  python -m transfer_jax.plots sweep experiments/t1_mnist_usps_tllib.py [--workdir=DIR]
      [--metric=KEY] [--rows=dann,mcc] [--columns=A→W,D→W] --output=PREFIX
  python -m transfer_jax.plots tsne BEFORE AFTER [--max_examples=N] [--seed=S] --output=PREFIX
  python -m transfer_jax.plots pad BEFORE AFTER [BEFORE AFTER ...] [--labels=A→W,...]
      --output=PREFIX

(`transfer-jax plots ...` is the same command.) Accuracies are drawn in percent, as the tables
show them; one legend per figure sits below the panels, off the data.

`curves`: the metrics of runs' metrics.jsonl over steps, one panel per metric (default: every
accuracy). `sweep`: a metric of a sweep's finished runs, mean ± std over seeds, one line per row
label (method) and one panel per column label (task), the labels of `transfer_jax.report`.
`tsne`: t-SNE of source and target features of two runs (e.g. source_only = before adaptation,
dann = after), colour = domain, marker = class. `pad`: the proxy A-distance (Ben-David et al.
2007; Ganin et al. 2016) of source and target features before and after adaptation, printed and
drawn as bars. Features are those of the final checkpoint's backbone on each domain's test split
(`--source_split`, `--target_split`), computed by `features.extract` and cached under
WORKDIR/features/ (or --cache_dir). Figures are drawn on matplotlib's Agg canvas (no display).
"""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from transfer_jax import report
from transfer_jax.errors import ArgumentParser, UserError
from transfer_jax.plots_drawing import legend_below, panels, run_title, save_figure
from transfer_jax.plots_features import plot_pads, plot_tsne
from transfer_jax.sweep_file import load_sweep, run_labels
from transfer_jax.training import workdir as workdir_lib

# ----------------------------------------------------------------------------- learning curves

def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of WORKDIR/metrics.jsonl (one per log or evaluation step)."""
  if not os.path.isfile(os.path.join(workdir, workdir_lib.METRICS_FILE)):
    raise UserError(f'no {workdir_lib.METRICS_FILE} in {workdir}; give the workdir of a run '
                    'that has logged at least one step')
  return workdir_lib.read_metrics(workdir)


def metric_series(records: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of `metric` over the records that hold it; the last record of a step wins."""
  by_step = {int(r['step']): float(r[metric]) for r in records if metric in r}
  steps = np.array(sorted(by_step), dtype=np.int64)
  return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def aggregate(series: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
  """Mean and (population) std over seeds at the steps every seed logged."""
  common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in series)))
  values = np.array([[dict(zip(s.tolist(), v, strict=True))[step] for step in common]
                     for s, v in series])
  return {'steps': np.array(common, dtype=np.int64), 'mean': values.mean(0),
          'std': values.std(0), 'seeds': np.int64(len(series))}


def plot_run_curves(workdirs: Sequence[str], metrics: Sequence[str], output: str,
                    labels: Sequence[str] = ()
                    ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
  """One panel per metric, one line per run (named by `labels`, else by its config: 'dann M→O
  s0'); returns {metric: {workdir: (steps, values)}} as logged (accuracies as fractions)."""
  if labels and len(labels) != len(workdirs):
    raise UserError(f'--labels has {len(labels)} names for {len(workdirs)} workdirs; give one '
                    'each')
  records = {w: read_metrics(w) for w in workdirs}
  if not metrics:  # Default: every accuracy any run logged.
    metrics = sorted({k for rs in records.values() for r in rs for k in r
                      if k.endswith('/accuracy')})
  data = {m: {w: metric_series(rs, m) for w, rs in records.items()} for m in metrics}
  for metric, runs in data.items():
    if not any(len(steps) for steps, _ in runs.values()):
      known = sorted({k for rs in records.values() for r in rs for k in r} - {'step', 'wall_s'})
      raise UserError(f'no run logged {metric!r}; choose --metrics among {", ".join(known)}')
  save_figure(curves_figure(data, list(labels) or run_titles(workdirs)), output)
  return data


def curves_figure(data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                  labels: Sequence[str]) -> Any:
  """The figure of `plot_run_curves`: accuracies in percent, the legend below the panels."""
  fig, axes = panels(len(data))
  for ax, (metric, runs) in zip(axes, data.items(), strict=True):
    scale = _scale(metric)
    for label, (steps, values) in zip(labels, runs.values(), strict=True):
      ax.plot(steps, scale * values, label=label, marker='o', markersize=3)
    ax.set(title=metric, xlabel='step', ylabel=_unit(metric, metric.rsplit('/', 1)[-1] + ' '))
  legend_below(fig, axes[0])
  return fig


def sweep_curves(path: str, workdir: str, metric: str = '', rows: Sequence[str] = (),
                 columns: Sequence[str] = ()) -> tuple[dict, list[str], dict[str, Any]]:
  """{column: {row: aggregate(...)}} of a sweep's finished runs (summary.json written), the
  names of the runs left out as unfinished, and the sweep's TABLE (rows, columns, seed keys)."""
  module, runs = load_sweep(path, workdir=workdir)
  table = {**report.DEFAULT_TABLE, **getattr(module, 'TABLE', {})}
  metric = metric or table['metric']
  series: dict[str, dict[str, list]] = {}
  missing = []
  needed = {need for run in runs for need in run['needs']}
  for run in runs:
    labels = run_labels(run)
    if run['name'] in needed and table['rows'] not in labels:
      continue  # A run others start from (a pretraining), not a row: as in the report.
    for key in ('rows', 'columns', 'seed'):
      if table[key] and table[key] not in labels:
        raise UserError(f'run {run["name"]} has no label {table[key]!r} (TABLE[{key!r}] of '
                        f'{path}); its labels are {sorted(labels)}')
    row, column = str(labels[table['rows']]), str(labels.get(table['columns'], metric))
    if (rows and row not in rows) or (columns and column not in columns):
      continue
    run_dir = os.path.join(workdir, run['name'])
    if workdir_lib.read_summary(run_dir) is None:
      missing.append(run['name'])
      continue
    steps, values = metric_series(read_metrics(run_dir), metric)
    if len(steps):
      series.setdefault(column, {}).setdefault(row, []).append((steps, values))
  if not series:
    raise UserError(f'no finished run of {path} under {workdir} logged {metric!r}; check '
                    '--workdir, --metric, --rows and --columns')
  ordered_columns = [c for c in columns if c in series] or list(series)
  curves = {}
  for column in ordered_columns:
    ordered_rows = [r for r in rows if r in series[column]] or list(series[column])
    curves[column] = {row: aggregate(series[column][row]) for row in ordered_rows}
  return curves, missing, {**table, 'metric': metric}


def plot_sweep_curves(path: str, workdir: str, output: str, metric: str = '',
                      rows: Sequence[str] = (), columns: Sequence[str] = ()) -> dict:
  """Mean over seeds (line) ± std (shaded), a line per row label, a panel per column label;
  returns what `sweep_curves` gives."""
  curves, missing, table = sweep_curves(path, workdir, metric, rows, columns)
  save_figure(sweep_figure(curves, table['metric']), output)
  if missing:
    print(f'{len(missing)} unfinished runs left out, e.g. {missing[0]}')
  return curves


def sweep_figure(curves: dict, metric: str) -> Any:
  """The figure of `plot_sweep_curves`: a panel per column, a colour per row (the same in every
  panel), accuracies in percent, one legend below the panels."""
  fig, axes = panels(len(curves))
  colours = {row: f'C{i % 10}' for i, row in enumerate(dict.fromkeys(
      row for lines in curves.values() for row in lines))}
  scale = _scale(metric)
  for ax, (column, lines) in zip(axes, curves.items(), strict=True):
    for row, line in lines.items():
      mean, std = scale * line['mean'], scale * line['std']
      ax.plot(line['steps'], mean, color=colours[row], label=f'{row} (n={line["seeds"]})')
      ax.fill_between(line['steps'], mean - std, mean + std, color=colours[row], alpha=0.2,
                      linewidth=0)
    ax.set(title=column, xlabel='step', ylabel=f'{metric}{_unit(metric, " ")}')
  legend_below(fig, *axes)
  return fig


def _scale(metric: str) -> float:
  """100 for accuracies (plotted in percent, as the tables show them), else 1."""
  return 100.0 if metric.endswith('accuracy') else 1.0


def _unit(metric: str, prefix: str = '') -> str:
  return f'{prefix}(%)' if metric.endswith('accuracy') else ''


def run_titles(workdirs: Sequence[str]) -> list[str]:
  """A legend name per run from its config ('dann M→O s0'); the workdir's name where two runs
  would share one."""
  titles = [run_title(workdir) for workdir in workdirs]
  return [title if titles.count(title) == 1 else os.path.basename(os.path.normpath(workdir))
          for title, workdir in zip(titles, workdirs, strict=True)]


# -------------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
  parser = ArgumentParser(prog='transfer-jax plots', description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument('--output', required=True, help='PREFIX of PREFIX.png and PREFIX.pdf')
  features = argparse.ArgumentParser(add_help=False)
  features.add_argument('--seed', type=int, default=0)
  features.add_argument('--source_split', default='test')
  features.add_argument('--target_split', default='test')
  features.add_argument('--cache_dir', default='', help='default: WORKDIR/features')
  curves = commands.add_parser('curves', parents=[common])
  curves.add_argument('workdirs', nargs='+')
  curves.add_argument('--metrics', default='', help='comma-separated; default: all accuracies')
  curves.add_argument('--labels', default='', help='comma-separated legend names, one per '
                      "workdir; default: each run's method, task and seed")
  sweep = commands.add_parser('sweep', parents=[common])
  sweep.add_argument('sweep_file')
  sweep.add_argument('--workdir', default='', help='default: runs/NAME')
  sweep.add_argument('--metric', default='', help="default: the sweep's TABLE metric")
  sweep.add_argument('--rows', default='', help='comma-separated row labels; default: all')
  sweep.add_argument('--columns', default='', help='comma-separated column labels; default: all')
  tsne = commands.add_parser('tsne', parents=[common, features])
  tsne.add_argument('before')
  tsne.add_argument('after')
  tsne.add_argument('--max_examples', type=int, default=500, help='per domain')
  pad = commands.add_parser('pad', parents=[common, features])
  pad.add_argument('workdirs', nargs='+', help='BEFORE AFTER [BEFORE AFTER ...]')
  pad.add_argument('--labels', default='', help='comma-separated, one per pair')
  return parser


def _splits(args: argparse.Namespace) -> tuple[str, str]:
  return f'source/{args.source_split}', f'target/{args.target_split}'


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  split_list = lambda text: [item for item in text.split(',') if item]  # noqa: E731
  try:
    if args.command == 'curves':
      plot_run_curves(args.workdirs, split_list(args.metrics), args.output,
                      split_list(args.labels))
    elif args.command == 'sweep':
      name = os.path.splitext(os.path.basename(args.sweep_file))[0]
      plot_sweep_curves(args.sweep_file, args.workdir or os.path.join('runs', name), args.output,
                        args.metric, split_list(args.rows), split_list(args.columns))
    elif args.command == 'tsne':
      if args.max_examples < 2:
        raise UserError(f'--max_examples={args.max_examples}: give at least 2 per domain')
      plot_tsne(args.before, args.after, args.output, args.max_examples, args.seed,
                _splits(args), args.cache_dir)
    else:
      if len(args.workdirs) % 2:
        raise UserError('give the workdirs as BEFORE AFTER pairs (an even number of them)')
      pairs = list(zip(args.workdirs[::2], args.workdirs[1::2], strict=True))
      plot_pads(pairs, args.output, split_list(args.labels), args.seed, _splits(args),
                args.cache_dir)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
