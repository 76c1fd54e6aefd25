"""Tables from a sweep's runs: `python -m transfer_jax.report experiments/NAME.py [--workdir=DIR]
[--metric=KEY] [--output=experiments/NAME]`.

Reads only the runs' workdir files (summary.json), never a model. A sweep file may set

  TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed',
           'metric': 'target/test/accuracy', 'scale': 100, 'title': '...'}

where rows / columns / seed name a label of each run: the `labels` dict a run may yield, else
its arg's `key=value` items and its overrides (e.g. 'method' from `arg='method=dann'`, 'seed'
from `overrides={'seed': 0}`). Writes NAME.md (Markdown) and NAME.tex (LaTeX, booktabs): mean ±
std over seeds, a column per task plus their average (the average of each seed's tasks, then mean
± std), a row per method, and a footer naming the commit(s) the runs were made at and the
command. Runs not finished yet are listed, not averaged.
"""

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from transfer_jax import selection
from transfer_jax import sweep as sweep_lib
from transfer_jax.training import workdir as workdir_lib

DEFAULT_TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed',
                 'metric': 'target/test/accuracy', 'scale': 100.0, 'title': '',
                 'selection': False}
# Selection rules: the evaluation step each run is read at. 'last': the last step; the others
# maximise a logged criterion (transfer_jax/selection.py); 'oracle' reads labelled target data
# (target/oracle_val) and is an upper bound, not a rule a method may use.
RULES = {'last': None, 'source_val': 'select/source_val', 'entropy': 'select/entropy',
         'snd': 'select/snd', 'iwv': 'select/iwv', 'dev': 'select/dev',
         'oracle': 'target/oracle_val/accuracy'}


def run_labels(module: Any, run: dict[str, Any]) -> dict[str, Any]:
  """The labels a table groups a run by (see the module docstring)."""
  labels = {}
  for item in filter(None, run['arg'].split(',')):
    key, _, value = item.partition('=')
    labels[key] = value if value else True
  labels.update(run['overrides'])
  labels.update(run.get('labels', {}))
  return labels


def collect(path: str, workdir: str, table: dict[str, Any],
            rules: tuple[str, ...] = ('last',)) -> tuple[dict, list[str], set[str]]:
  """{rule: {(row, column): {seed: value}}}, the unfinished runs, and the commits of the
  finished ones. A rule's value is the metric at the evaluation that rule selects."""
  module, runs = sweep_lib.load_sweep(path)
  cells: dict[str, dict[tuple[str, str], dict[Any, float]]] = {rule: {} for rule in rules}
  missing, commits = [], set()
  for run in runs:
    labels = run_labels(module, run)
    for key in ('rows', 'columns', 'seed'):
      if table[key] and table[key] not in labels:
        from transfer_jax.errors import UserError
        raise UserError(f'run {run["name"]} has no label {table[key]!r} (TABLE[{key!r}]); its '
                        f'labels are {sorted(labels)}')
    summary = workdir_lib.read_summary(os.path.join(workdir, run['name']))
    if summary is None or table['metric'] not in summary.get('final', {}):
      missing.append(run['name'])
      continue
    commits.add(_short(summary.get('git_commit')))
    row = str(labels[table['rows']])
    column = str(labels[table['columns']]) if table['columns'] else table['metric']
    seed = labels[table['seed']] if table['seed'] else 0
    records = _eval_records(os.path.join(workdir, run['name']), table['metric'])
    for rule in rules:
      record = summary['final'] if rule == 'last' else selection.best_step(records, RULES[rule])
      if record is not None:
        cells[rule].setdefault((row, column), {})[seed] = table['scale'] * record[table['metric']]
  return cells, missing, commits


def _eval_records(run_dir: str, metric: str) -> list[dict[str, Any]]:
  path = os.path.join(run_dir, workdir_lib.METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [r for r in map(json.loads, f) if metric in r]


def format_tables(cells: dict, table: dict[str, Any], footer: str,
                  average: bool = True) -> tuple[str, str]:
  """The Markdown and LaTeX tables of `cells` ({(row, column): {seed: value}}), with an 'avg'
  column over the columns when `average`."""
  rows = list(dict.fromkeys(r for r, _ in cells))
  columns = list(dict.fromkeys(c for _, c in cells))

  def stats(values):
    return (float(np.mean(values)), float(np.std(values)), len(values))

  grid = {}
  for row in rows:
    for column in columns:
      if (row, column) in cells:
        grid[row, column] = stats(list(cells[row, column].values()))
    seeds = set.intersection(*(set(cells.get((row, c), {})) for c in columns))
    if average and len(columns) > 1 and seeds:
      grid[row, 'avg'] = stats([np.mean([cells[row, c][s] for c in columns])
                                for s in sorted(seeds, key=str)])
  header = columns + (['avg'] if average and len(columns) > 1 else [])
  md = ([f'# {table["title"]}', ''] if table['title'] else []) + [
      f'| {table["rows"]} | ' + ' | '.join(header) + ' |', '|---|' + '---|' * len(header)]
  tex = ['\\begin{tabular}{l' + 'c' * len(header) + '}', '\\toprule',
         ' & '.join([table['rows']] + [_tex(c) for c in header]) + ' \\\\', '\\midrule']
  for row in rows:
    entries = [grid.get((row, c)) for c in header]
    md.append(f'| {row} | ' + ' | '.join(_md_cell(e) for e in entries) + ' |')
    tex.append(' & '.join([_tex(row)] + [f'${e[0]:.1f} \\pm {e[1]:.1f}$' if e else '--'
                                         for e in entries]) + ' \\\\')
  md += ['', footer]
  tex += ['\\bottomrule', '\\end{tabular}', f'% {footer}']
  return '\n'.join(md) + '\n', '\n'.join(tex) + '\n'


def _with_selection(cells: dict, table: dict[str, Any], footer: str) -> tuple[str, str]:
  """A summary (rows x rules, the average over tasks), then one table per rule."""
  summary = {}
  for rule, rule_cells in cells.items():
    columns = list(dict.fromkeys(c for _, c in rule_cells))
    for row in dict.fromkeys(r for r, _ in rule_cells):
      seeds = set.intersection(*(set(rule_cells.get((row, c), {})) for c in columns))
      if seeds:
        summary[row, rule] = {s: np.mean([rule_cells[row, c][s] for c in columns]) for s in seeds}
  head_md, head_tex = format_tables(summary, {**table, 'title': (table['title'] + ': average '
                                                                 'over tasks, per selection rule')},
                                    'Rules: last step; source validation accuracy; target '
                                    'entropy; SND; IWV; DEV; oracle = labelled target '
                                    'validation data (an upper bound, not a rule).',
                                    average=False)
  parts_md, parts_tex = [head_md], [head_tex]
  for rule, rule_cells in cells.items():
    if rule_cells:
      md, tex = format_tables(rule_cells, {**table, 'title': f'selection rule: {rule}'}, '')
      parts_md.append(md.replace('# selection rule', '## selection rule'))
      parts_tex.append(f'% selection rule: {rule}\n' + tex)
  return '\n'.join(parts_md) + '\n' + footer + '\n', '\n'.join(parts_tex) + f'% {footer}\n'


def _md_cell(entry: tuple[float, float, int] | None) -> str:
  if entry is None:
    return '–'
  mean, std, count = entry
  return f'{mean:.1f} ± {std:.1f}' + ('' if count > 1 else ' (1 seed)')


def _tex(text: str) -> str:
  return (text.replace('\\', '\\textbackslash{}').replace('_', '\\_').replace('%', '\\%')
          .replace('&', '\\&').replace('→', '$\\to$'))


def main(argv: list[str] | None = None) -> int:
  from transfer_jax.errors import UserError
  parser = argparse.ArgumentParser(prog='python -m transfer_jax.report',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('sweep_file')
  parser.add_argument('--workdir', default='', help='default: runs/NAME (as the sweep)')
  parser.add_argument('--metric', default='', help="default: TABLE['metric']")
  parser.add_argument('--output', default='', help='path without extension; default: next to '
                      'the sweep file')
  args = parser.parse_args(argv)
  name = os.path.splitext(os.path.basename(args.sweep_file))[0]
  try:
    module, _ = sweep_lib.load_sweep(args.sweep_file)
    table = {**DEFAULT_TABLE, **getattr(module, 'TABLE', {})}
    if args.metric:
      table['metric'] = args.metric
    workdir = args.workdir or os.path.join('runs', name)
    rules = tuple(RULES) if table['selection'] else ('last',)
    cells, missing, commits = collect(args.sweep_file, workdir, table, rules)
    if not cells['last']:
      raise UserError(f'no finished run of {args.sweep_file} in {workdir}; run '
                      f'`python -m transfer_jax.sweep {args.sweep_file}` first')
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  command = 'python -m transfer_jax.report ' + ' '.join(argv if argv is not None else sys.argv[1:])
  footer = (f'{table["metric"]} × {table["scale"]:g} at the last step, mean ± std over seeds. '
            f'Runs made at commit {", ".join(sorted(commits))}; table by `{command}` at commit '
            f'{_short(workdir_lib.git_commit())}.'
            + (f' Unfinished runs: {len(missing)}.' if missing else ''))
  markdown, latex = format_tables(cells['last'], table, footer)
  if table['selection']:
    markdown, latex = _with_selection(cells, table, footer)
  output = args.output or os.path.splitext(args.sweep_file)[0]
  for ext, text in (('md', markdown), ('tex', latex)):
    with open(f'{output}.{ext}', 'w') as f:
      f.write(text)
  print(markdown + f'\nwritten: {output}.md, {output}.tex')
  return 0


def _short(commit: str | None) -> str:
  commit = commit or '?'
  return commit[:7] + ('+dirty' if commit.endswith('+dirty') else '')


if __name__ == '__main__':
  sys.exit(main())
