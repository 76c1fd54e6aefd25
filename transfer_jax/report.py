"""Tables from a sweep's runs: `transfer-jax report experiments/t1_mnist_usps_tllib.py
[--workdir=DIR] [--metric=KEY] [--output=PREFIX | --publish] [--records=DIR]
[--override KEY=VALUE ...]` (or `python -m transfer_jax.report ...`).

Reads only the runs' workdir files (summary.json), never a model. The tables go to the sweep's
workdir (WORKDIR/SWEEP.md, .tex); `--publish` writes the committed tables (e.g.
experiments/t1_mnist_usps_tllib.md, .tex) beside the sweep file instead, and only when every
run is finished. `--records DIR`: each finished run's small files into DIR/RUN, to commit and
remake the tables from (`workdir.copy_records`). A sweep file may set

  TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed',
           'metric': 'target/test/accuracy', 'scale': 100, 'title': '...'}

where rows / columns / seed name a label of each run: the `labels` dict a run may yield, else
its arg's `key=value` items and its overrides (e.g. 'method' from `arg='method=dann'`, 'seed'
from `overrides={'seed': 0}`). Writes NAME.md (Markdown) and NAME.tex (LaTeX, booktabs): mean ±
std over seeds, a column per task plus their average (the average of each seed's tasks, then mean
± std), a row per method, and a footer naming the commit(s) the runs were made at and the
command. Runs not finished yet are listed, not averaged.

More TABLE keys:
  'notes':  lines written under the table(s): paragraphs in the .md (a note may hold several
            lines, e.g. a Markdown table), `%` comments in the .tex; anchors, protocol remarks.
  'versus': the row of the from-scratch (no-transfer) baseline: adds a table with, per row, the
            metric averaged over the columns (mean ± std over seeds), its difference to the
            baseline's, the mean wall time per run (summary 'wall_s') and its ratio to the
            baseline's, and the trainable parameters (summary 'trainable_param_count').
Runs without the rows label that other runs need (a pretraining run, see transfer_jax/sweep.py)
are not in the table: a line lists their final accuracies and wall time.
"""

import argparse
import os
import sys
from typing import Any

import numpy as np

from transfer_jax import selection
from transfer_jax import sweep as sweep_lib
from transfer_jax.errors import ArgumentParser, UserError
from transfer_jax.sweep_file import LOCATION_KEYS, load_sweep, run_labels
from transfer_jax.training import workdir as workdir_lib

DEFAULT_TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed',
                 'metric': 'target/test/accuracy', 'scale': 100.0, 'title': '',
                 'selection': False, 'notes': (), 'versus': '', 'target_test_every': 0}
# Selection rules: the evaluation step each run is read at. 'last': the last step; the others
# maximise a logged criterion (transfer_jax/selection.py); 'oracle' reads labelled target data
# (target/oracle_val): a reference that uses target labels, not a rule a method may use.
RULES = {'last': None, 'source_val': 'select/source_val', 'entropy': 'select/entropy',
         'snd': 'select/snd', 'iwv': 'select/iwv', 'dev': 'select/dev',
         'oracle': 'target/oracle_val/accuracy'}
# TLlib's rule, shown only where TABLE['target_test_every'] = N > 0: the evaluation at a multiple
# of N steps with the best target TEST accuracy. It selects on test data: optimistic, for a like
# for like comparison with published tables that used it, never a rule of ours.
TARGET_TEST = 'target_test'
# One line per rule (the step it picks), for `transfer-jax list rules`.
RULE_DESCRIPTIONS = {
    'last': 'the last evaluation step (no selection)',
    'source_val': 'best accuracy on held-out source data (data.source.val_fraction)',
    'entropy': 'lowest mean entropy of target predictions',
    'snd': 'highest soft neighbourhood density of target features (Saito et al. 2021)',
    'iwv': 'lowest importance-weighted source validation risk (Sugiyama et al. 2007)',
    'dev': 'lowest deep embedded validation risk (You et al. 2019)',
    'oracle': 'a reference, not a rule: best accuracy on labelled target/oracle_val',
    TARGET_TEST: ("optimistic, TLlib's: best target test accuracy at multiples of "
                  "TABLE['target_test_every'] steps"),
}


def collect(path: str, workdir: str, table: dict[str, Any], rules: tuple[str, ...] = ('last',),
            extra_overrides: dict[str, Any] | None = None) -> tuple[dict, dict[str, Any]]:
  """{rule: {(row, column): {seed: value}}} (a rule's value is the metric at the evaluation that
  rule selects) and what else the report shows: {'missing': unfinished runs, 'commits': of the
  finished ones, 'rows': every row label, 'costs': {row: {'wall_s': [...], 'trainable': [...]}},
  'inputs': [(name, summary)] of the runs that others need and that are not in the table}."""
  _, runs = load_sweep(path, extra_overrides, workdir)
  needed = {need for run in runs for need in run['needs']}
  cells: dict[str, dict[tuple[str, str], dict[Any, float]]] = {rule: {} for rule in rules}
  info: dict[str, Any] = {'missing': [], 'commits': set(), 'rows': set(), 'costs': {},
                          'inputs': [], 'finished': []}
  for run in runs:
    labels = run_labels(run)
    summary = workdir_lib.read_summary(os.path.join(workdir, run['name']))
    if run['name'] in needed and table['rows'] not in labels:
      info['inputs'].append((run['name'], summary))
      if summary is not None:
        info['finished'].append(run['name'])
      continue
    for key in ('rows', 'columns', 'seed'):
      if table[key] and table[key] not in labels:
        raise UserError(f'run {run["name"]} has no label {table[key]!r} (TABLE[{key!r}]); its '
                        f'labels are {sorted(labels)}')
    row = str(labels[table['rows']])
    info['rows'].add(row)
    if summary is None or table['metric'] not in summary.get('final', {}):
      info['missing'].append(run['name'])
      continue
    info['commits'].add(_short(summary.get('git_commit')))
    info['finished'].append(run['name'])
    cost = info['costs'].setdefault(row, {'wall_s': [], 'trainable': []})
    # A vectorized group's wall time is shared by its runs: each is charged its share.
    wall = summary.get('wall_s')
    cost['wall_s'].append(wall / summary.get('vectorized_runs', 1) if wall is not None else None)
    cost['trainable'].append(summary.get('trainable_param_count'))
    column = str(labels[table['columns']]) if table['columns'] else table['metric']
    seed = labels[table['seed']] if table['seed'] else 0
    records = [r for r in workdir_lib.read_metrics(os.path.join(workdir, run['name']))
               if table['metric'] in r]
    for rule in rules:
      record = select_record(rule, records, summary, table)
      if record is not None:
        cells[rule].setdefault((row, column), {})[seed] = table['scale'] * record[table['metric']]
  return cells, info


def select_record(rule: str, records: list[dict[str, Any]], summary: dict[str, Any],
                  table: dict[str, Any]) -> dict[str, Any] | None:
  """The metrics a rule reads a run at: the summary's final ones ('last'), the evaluation that
  maximises the rule's criterion, or ('target_test') the evaluation at a multiple of
  TABLE['target_test_every'] steps with the best `table['metric']`."""
  if rule == 'last':
    return summary['final']
  if rule == TARGET_TEST:
    every = table['target_test_every']
    return selection.best_step([r for r in records if r['step'] % every == 0], table['metric'])
  return selection.best_step(records, RULES[rule])


def format_tables(cells: dict, table: dict[str, Any], footer: str,
                  average: bool = True) -> tuple[str, str]:
  """The Markdown and LaTeX tables of `cells` ({(row, column): {seed: value}}), with an 'avg'
  column over the columns when `average`."""
  rows = list(dict.fromkeys(r for r, _ in cells))
  columns = list(dict.fromkeys(c for _, c in cells))

  def stats(values):
    return (float(np.mean(values)), float(np.std(values)), len(values))

  averages = row_averages(cells) if average and len(columns) > 1 else {}
  grid = {}
  for row in rows:
    for column in columns:
      if (row, column) in cells:
        grid[row, column] = stats(list(cells[row, column].values()))
    if row in averages:
      grid[row, 'avg'] = stats(list(averages[row].values()))
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
  md += ['', footer] if footer else []
  tex += ['\\bottomrule', '\\end{tabular}'] + ([f'% {footer}'] if footer else [])
  return '\n'.join(md) + '\n', '\n'.join(tex) + '\n'


def row_averages(cells: dict) -> dict[str, dict[Any, float]]:
  """{row: {seed: the mean over the columns}} ({(row, column): {seed: value}} in), for the seeds
  a row has in every column, in the order of their names; rows with no such seed are left out.
  The one seed-wise average of the tables: the 'avg' column, the versus and selection tables."""
  columns = list(dict.fromkeys(c for _, c in cells))
  averages = {}
  for row in dict.fromkeys(r for r, _ in cells):
    seeds = set.intersection(*(set(cells.get((row, c), {})) for c in columns))
    if seeds:
      averages[row] = {s: float(np.mean([cells[row, c][s] for c in columns]))
                       for s in sorted(seeds, key=str)}
  return averages


def versus_tables(cells: dict, costs: dict[str, dict[str, list]], table: dict[str, Any]
                  ) -> tuple[str, str]:
  """Markdown and LaTeX: each row against the baseline row TABLE['versus']: the metric averaged
  over the columns, its difference, wall time per run and its ratio, trainable parameters."""
  baseline = table['versus']
  averages = row_averages(cells)
  rows = [r for r in averages if r == baseline] + [r for r in averages if r != baseline]
  base = averages.get(baseline)
  base_mean = float(np.mean(list(base.values()))) if base else None
  base_wall = _mean_wall(costs.get(baseline))
  over = f'avg over {table["columns"]}' if table['columns'] else table['metric']
  metric = table['metric'].rsplit('/', 1)[-1]
  header = [table['rows'], f'{metric} ({over})', f'Δ vs {baseline}', 'wall s / run',
            f'wall × {baseline}', 'trainable params']
  md = [f'## Transfer versus {baseline}', '', '| ' + ' | '.join(header) + ' |',
        '|---|' + '---|' * (len(header) - 1)]
  tex = [f'% Transfer versus {_tex(baseline)}', '\\begin{tabular}{l' + 'r' * 5 + '}',
         '\\toprule', ' & '.join(_tex(h).replace('Δ', '$\\Delta$').replace('×', '$\\times$')
                                   for h in header) + ' \\\\', '\\midrule']
  for row in rows:
    values = list(averages[row].values())
    mean, std = float(np.mean(values)), float(np.std(values))
    wall = _mean_wall(costs.get(row))
    delta = f'{mean - base_mean:+.1f}' if base_mean is not None else '–'
    ratio = f'{wall / base_wall:.2f}' if wall is not None and base_wall else '–'
    entries = [f'{mean:.1f} ± {std:.1f}' + ('' if len(values) > 1 else ' (1 seed)'), delta,
               f'{wall:.1f}' if wall is not None else '–', ratio,
               _param_count(costs.get(row, {}).get('trainable', []))]
    md.append(f'| {row} | ' + ' | '.join(entries) + ' |')
    tex.append(' & '.join([_tex(row), f'${mean:.1f} \\pm {std:.1f}$',
                           *(e.replace('–', '--').replace(',', '{,}') for e in entries[1:])])
               + ' \\\\')
  md += ['', f'{table["metric"]} × {table["scale"]:g} averaged over the columns per seed, then '
         f'mean ± std over seeds; Δ: the difference of the means to the {baseline} row; wall: '
         'mean training seconds per run (summary wall_s, divided by vectorized_runs for runs '
         'trained together; the runs it starts from not counted).']
  if base is None:
    md.append(f'(No finished {baseline} run yet: no differences.)')
  tex += ['\\bottomrule', '\\end{tabular}']
  return '\n'.join(md) + '\n', '\n'.join(tex) + '\n'


def _mean_wall(cost: dict[str, list] | None) -> float | None:
  walls = [w for w in (cost or {}).get('wall_s', []) if w is not None]
  return float(np.mean(walls)) if walls else None


def _param_count(counts: list) -> str:
  counts = sorted({c for c in counts if c is not None})
  if not counts:
    return '–'
  return f'{counts[0]:,}' if len(counts) == 1 else f'{counts[0]:,}–{counts[-1]:,}'


def inputs_line(inputs: list[tuple[str, dict | None]], scale: float) -> str:
  """One line on the runs the table's runs start from: final accuracies and wall time."""
  parts = []
  for name, summary in inputs:
    if summary is None:
      parts.append(f'`{name}` (not finished)')
      continue
    final = summary.get('final', {})
    metrics = ', '.join(f'{key} {scale * value:.1f}' for key, value in sorted(final.items())
                        if key.endswith('/accuracy'))
    wall = summary.get('wall_s')
    parts.append(f'`{name}`: {metrics}' + (f', {wall:.0f} s' if wall is not None else ''))
  return 'Runs the table\'s runs start from (not in the table): ' + '; '.join(parts) + '.'


def _with_selection(cells: dict, table: dict[str, Any], footer: str) -> tuple[str, str]:
  """A summary (rows x rules, the average over tasks), then one table per rule."""
  summary = {(row, rule): seeds for rule, rule_cells in cells.items()
             for row, seeds in row_averages(rule_cells).items()}
  head_md, head_tex = format_tables(summary, {**table, 'title': (table['title'] + ': average '
                                                                 'over tasks, per selection rule')},
                                    'Each rule picks one evaluation step per run: the last '
                                    'step; or the step maximising source validation accuracy, '
                                    'minus target entropy, SND, minus the IWV or DEV risk; '
                                    'oracle = the step with the best accuracy on labelled '
                                    'target validation data (target/oracle_val, held out of '
                                    'the target training split): it uses target labels, so it '
                                    'is a reference, not a rule, and on a small validation '
                                    'split it need not beat the others. ' + (
                                        f"target_test = TLlib's rule, the step (a multiple of "
                                        f"{table['target_test_every']}) with the best target "
                                        'TEST accuracy: it selects on test data and is '
                                        'optimistic, shown only to compare with tables made '
                                        'that way; no other rule reads target test data.'
                                        if TARGET_TEST in cells else
                                        'Target test data selects nothing.'),
                                    average=False)
  parts_md, parts_tex = [head_md], [head_tex]
  for rule, rule_cells in cells.items():
    if rule_cells:
      md, tex = format_tables(rule_cells, {**table, 'title': f'selection rule: {rule}'}, '')
      parts_md.append(md.replace('# selection rule', '## selection rule'))
      parts_tex.append(f'% selection rule: {rule}\n' + tex)
  end_md, end_tex = (f'\n{footer}\n', f'% {footer}\n') if footer else ('', '')
  return '\n'.join(parts_md) + end_md, '\n'.join(parts_tex) + end_tex


def _md_cell(entry: tuple[float, float, int] | None) -> str:
  if entry is None:
    return '–'
  mean, std, count = entry
  return f'{mean:.1f} ± {std:.1f}' + ('' if count > 1 else ' (1 seed)')


def _tex(text: str) -> str:
  return (text.replace('\\', '\\textbackslash{}').replace('_', '\\_').replace('%', '\\%')
          .replace('&', '\\&').replace('→', '$\\to$'))


def main(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog='transfer-jax report',
                          description=__doc__.splitlines()[0])
  parser.add_argument('sweep_file')
  parser.add_argument('--workdir', default='', help='default: runs/NAME (as the sweep)')
  parser.add_argument('--metric', default='', help="default: TABLE['metric']")
  parser.add_argument('--output', default='', help='path without extension; default: '
                      'WORKDIR/NAME, in the sweep\'s workdir')
  parser.add_argument('--publish', action='store_true',
                      help='write the committed table beside the sweep file (.md and .tex, e.g. '
                      'experiments/t1_mnist_usps_tllib.md); refused while a run is missing')
  parser.add_argument('--records', default='', metavar='DIR',
                      help="also copy each finished run's metrics, summary and config (no "
                      'checkpoints) into DIR/RUN, to commit; --workdir=DIR remakes the tables')
  parser.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                      help='as given to the sweep (the overrides are part of the run names)')
  args = parser.parse_args(argv)
  name = os.path.splitext(os.path.basename(args.sweep_file))[0]
  try:
    extra = sweep_lib.parse_overrides(args.override)
    module, _ = load_sweep(args.sweep_file, extra)
    table = {**DEFAULT_TABLE, **getattr(module, 'TABLE', {})}
    if args.metric:
      table['metric'] = args.metric
    shown = sorted((k, v) for k, v in extra.items() if k not in LOCATION_KEYS)
    if shown:   # A table of runs made with overrides says so in its title.
      table['title'] = (f'{table["title"] or name} (runs with '
                        + ', '.join(f'{k}={v}' for k, v in shown) + ')')
    workdir = args.workdir or os.path.join('runs', name)
    rules = tuple(RULES) if table['selection'] else ('last',)
    if table['target_test_every']:
      rules += (TARGET_TEST,)
    cells, info = collect(args.sweep_file, workdir, table, rules, extra)
    if not cells['last']:
      raise UserError(f'no finished run of {args.sweep_file} in {workdir}; run '
                      f'`python -m transfer_jax.sweep {args.sweep_file}` first')
    if table['versus'] and table['versus'] not in info['rows']:
      raise UserError(f"TABLE['versus'] = {table['versus']!r} is no row of the table; give one "
                      f'of {sorted(info["rows"])}')
    output = publish_path(args, info, workdir, name)
    if args.records:
      copied = workdir_lib.copy_records(workdir, info['finished'], args.records)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  command = 'python -m transfer_jax.report ' + ' '.join(argv if argv is not None else sys.argv[1:])
  missing = info['missing']
  when = ('at the evaluation step each selection rule picks (the last step in the `last` table)'
          if table['selection'] else 'at the last step')
  footer = (f'{table["metric"]} × {table["scale"]:g} {when}, mean ± std over seeds. '
            f'Runs made at commit {", ".join(sorted(info["commits"]))}; table by `{command}` at '
            f'commit {_short(workdir_lib.git_commit())}.'
            + (f' Unfinished runs: {len(missing)}.' if missing else ''))
  markdown, latex = render(cells, info, table, footer)
  for ext, text in (('md', markdown), ('tex', latex)):
    with open(f'{output}.{ext}', 'w') as f:
      f.write(text)
  print(markdown + f'\nwritten: {output}.md, {output}.tex')
  if args.records:
    print(f'records: {len(info["finished"])} finished runs in {args.records} ({copied} files '
          'copied, the others already there)')
  return 0


def publish_path(args: argparse.Namespace, info: dict[str, Any], workdir: str, name: str) -> str:
  """Where the tables go: --output; with --publish the committed table beside the sweep file
  (experiments/t1_mnist_usps_tllib.md for experiments/t1_mnist_usps_tllib.py), only when every
  run (and every run they start from) is finished; else the sweep's workdir, so a partial or
  smoke-test report never replaces a committed table."""
  if not args.publish:
    return args.output or os.path.join(workdir, name)
  if args.output or args.override:
    raise UserError('--publish writes the committed table of the sweep as written: leave out '
                    '--output and --override (or drop --publish)')
  unfinished = len(info['missing']) + sum(summary is None for _, summary in info['inputs'])
  if unfinished:
    raise UserError(f'{unfinished} run(s) of {args.sweep_file} are not finished in {workdir}; '
                    f'finish them (`transfer-jax sweep {args.sweep_file}`) before --publish, or '
                    f'leave it out to write {os.path.join(workdir, name)}.md')
  return os.path.splitext(args.sweep_file)[0]


def render(cells: dict, info: dict[str, Any], table: dict[str, Any], footer: str
           ) -> tuple[str, str]:
  """The whole .md and .tex: the table(s), the versus table, the input runs, notes, footer."""
  if table['selection']:
    markdown, latex = _with_selection(cells, table, '')
  else:
    markdown, latex = format_tables(cells['last'], table, '')
  md_parts, tex_parts = [markdown.rstrip('\n')], [latex.rstrip('\n')]
  if table['versus']:
    md, tex = versus_tables(cells['last'], info['costs'], table)
    md_parts.append(md.rstrip('\n'))
    tex_parts.append(tex.rstrip('\n'))
  notes = list(table['notes'])
  if info['inputs']:
    notes.insert(0, inputs_line(info['inputs'], table['scale']))
  md_parts += notes + [footer]
  tex_parts += ['\n'.join(f'% {line}'.rstrip() for line in note.splitlines())
                for note in notes + [footer]]
  return '\n\n'.join(md_parts) + '\n', '\n'.join(tex_parts) + '\n'


def _short(commit: str | None) -> str:
  commit = commit or '?'
  return commit[:7] + ('+dirty' if commit.endswith('+dirty') else '')


if __name__ == '__main__':
  sys.exit(main())
