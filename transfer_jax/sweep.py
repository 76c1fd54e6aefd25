"""Sweeps: `python -m transfer_jax.sweep experiments/t1_mnist_usps_tllib.py [--workdir=DIR]
[--parallel=N] [--executor=inline|process|submitit_local|slurm] [--dry_run]
[--override KEY=VALUE ...] [--vectorize K]`.

A sweep file is a Python file that defines

  CONFIG = 'configs/office_caltech_surf.py'   # the config file its runs start from
  def runs():                                  # yields one dict per run
    for seed in (0, 1, 2):
      for trade_off in (0.1, 1.0):
        yield {'arg': 'source=A,target=W,method=dann',
               'overrides': {'seed': seed, 'method.trade_off': trade_off}}

and may use `grid(...)` and `random_search(...)` from this module to build the dicts (a run may
also carry `labels`, e.g. {'task': 'A→W'}: names for `transfer_jax.report`). Every run
gets a workdir named after its labels (else its arg and overrides), plus a hash of its config,
arg and overrides, under `--workdir` (default runs/NAME). Data locations (data.manual_dir,
data.data_dir, compilation_cache_dir) are not part of the hash: the same sweep from another
checkout finds the same runs. `--only KEY=VALUE` (repeatable; one key given twice means either
value) runs the subset whose labels match, e.g. `--only method=dann --only seed=0`.

Runs are resumable and never executed twice: a run whose
summary.json reports its last step is skipped; an interrupted run resumes from its checkpoint;
a run being trained (a lock file `.sweep_lock` names its host and process) is left alone, and a
lock whose process died on this host is taken over.

Runs that start from other runs (fine-tuning a pretrained run, growing a small network): a run
may carry
  'name':   a fixed workdir name instead of the hashed one (for runs that others start from);
  'needs':  names of runs that must be done first; the sweep runs in waves (a run's wave is one
            more than the latest of its needs), and a run whose needs did not finish is left
            'blocked' for the next invocation;
  'before': a function (run_dir, sweep_workdir) called in the sweep process just before the
            run trains (e.g. writing the .npz that its init_from.path loads).
In string override values `{sweep_workdir}` stands for the sweep's workdir (absolute); it is
replaced when the run starts and is not part of the run's name, so a moved sweep keeps its
names: {'name': 'pretrain', ...} then {'needs': ['pretrain'], 'overrides': {'init_from.path':
'{sweep_workdir}/pretrain'}}. `--override KEY=VALUE` adds an override to every run (a smoke
test into a scratch --workdir: `--override total_steps=4`; the report takes the same flag).

Executors: `inline` (default: one after another in this process, compiled steps shared through
the persistent cache), `process` (`--parallel` N subprocesses of `transfer_jax.main`),
`submitit_local` and `slurm` (one submitit job per run; `SLURM = {...}` in the sweep file sets
the executor's parameters, e.g. {'slurm_partition': 'gpu', 'gpus_per_node': 1, 'timeout_min':
120}). `--vectorize K`: runs that differ only in seed, method.trade_off, optimizer.learning_rate
or optimizer.weight_decay train up to K at a time in one program over a run axis (vmapped;
convolutional nets on CPU unrolled: transfer_jax/training/vectorized.py); with every executor a
group is one job.

Every executor writes each run's output to RUN_DIR/train.log; the sweep prints a line as each
run starts and ends (finished / failed / remaining, the run now training, an ETA) and, at the
end, the table's wall time and runs per hour.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from transfer_jax import config_lib
from transfer_jax.errors import ArgumentParser, UserError
from transfer_jax.sweep_file import (  # noqa: F401 (grid, random_search: for sweep files)
  grid,
  load_sweep,
  parse_overrides,
  random_search,
  select_runs,
)
from transfer_jax.sweep_progress import Progress, logged_train_runs, table_figures
from transfer_jax.training import runtime
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training.vectorized import group_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_WORKDIR = '{sweep_workdir}'   # Placeholder in override values (see the docstring).
def _spec(run: dict[str, Any]) -> str:
  path = run['config'] if os.path.isabs(run['config']) else os.path.join(ROOT, run['config'])
  return f'{path}:{run["arg"]}' if run['arg'] else path


def _override_strings(run: dict[str, Any], sweep_workdir: str) -> list[str]:
  """`key=value` strings, `{sweep_workdir}` replaced by the sweep's absolute workdir."""
  root = os.path.abspath(sweep_workdir)
  return [f'{key}={value.replace(SWEEP_WORKDIR, root) if isinstance(value, str) else value}'
          for key, value in run['overrides'].items()]


def status(run: dict[str, Any], workdir: str) -> str:
  """'done' (summary at the last step), 'running' (a live lock), or 'todo'. `workdir` is the
  run's, inside the sweep's workdir."""
  summary = workdir_lib.read_summary(workdir)
  if summary is not None:
    overrides = _override_strings(run, os.path.dirname(os.path.abspath(workdir)))
    total = config_lib.load_config(_spec(run), overrides).total_steps
    if summary.get('steps') == total:
      return 'done'
  return 'running' if workdir_lib.lock_holder(workdir) is not None else 'todo'


def _subprocess_runs(specs: list[str], overrides: list[list[str]],
                     workdirs: list[str]) -> list[str]:
  """`train_runs` in a fresh Python process (the `process` executor); the runs' output goes to
  their train.log files."""
  code = ('import json, sys; from transfer_jax.sweep_progress import logged_train_runs; '
          'print(json.dumps(logged_train_runs(*json.loads(sys.argv[1]))))')
  result = subprocess.run([sys.executable, '-c', code, json.dumps([specs, overrides, workdirs])],
                          cwd=ROOT, capture_output=True, text=True)
  if result.returncode != 0:
    tail = (result.stderr.strip().splitlines() or ['(no output)'])[-1]
    raise RuntimeError(f'{", ".join(workdirs)}: exit {result.returncode}: {tail}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def groups_of(jobs: list[tuple[str, str, list[str], str]], runs: dict[str, dict[str, Any]],
              size: int) -> list[list[tuple[str, str, list[str], str]]]:
  """Jobs (name, spec, overrides, run_dir) in groups of at most `size` runs that differ only in
  the keys a vectorized group may vary (seed, trade-off, learning rate, weight decay); in order
  of their first run."""
  if size <= 1:
    return [[job] for job in jobs]
  groups: dict[str, list] = {}
  for job in jobs:
    run = runs[job[0]]
    key = group_key(run['config'], run['arg'], run['overrides'])
    if key not in groups or len(groups[key][-1]) >= size:
      groups.setdefault(key, []).append([])
    groups[key][-1].append(job)
  return [group for chunks in groups.values() for group in chunks]


def run_sweep(path: str, workdir: str, executor: str = 'inline', parallel: int = 1,
              dry_run: bool = False, extra_overrides: dict[str, Any] | None = None,
              vectorize: int = 1, only: list[str] | None = None) -> dict[str, list[str]]:
  """Runs every run of the sweep (or the subset `only` selects, see `select_runs`) that is not
  done, wave by wave (see 'needs'), up to `vectorize` runs together as one vectorized group;
  returns {outcome: [run names]}."""
  if executor not in ('inline', 'process', 'submitit_local', 'slurm'):
    raise UserError(f'unknown --executor={executor!r}; choose inline, process, submitit_local '
                    'or slurm')
  if executor == 'slurm' and not dry_run and shutil.which('sbatch') is None:
    raise UserError('--executor=slurm needs Slurm (no sbatch on this machine); run the sweep '
                    'where Slurm is installed, or use --executor=inline or process here')
  workdir = os.path.abspath(workdir)
  module, runs = load_sweep(path, extra_overrides, workdir)
  runs = select_runs(runs, only or [])
  outcomes: dict[str, list[str]] = {'done': [], 'running': [], 'trained': [], 'skipped': [],
                                    'failed': [], 'blocked': [], 'todo': []}
  todo = []
  for run in runs:
    state = status(run, os.path.join(workdir, run['name']))
    if state != 'todo':
      outcomes[state].append(run['name'])
    else:
      todo.append(run)
  waves = sorted({run['wave'] for run in todo})
  print(f'sweep {path}: {len(runs)} runs, {len(outcomes["done"])} done, '
        f'{len(outcomes["running"])} running elsewhere, {len(todo)} to run in {len(waves)} '
        f'wave(s) ({executor})')
  if dry_run:
    for run in sorted(todo, key=lambda r: r['wave']):
      print(f'  wave {run["wave"]}: {run["name"]}'
            + (f' (needs {", ".join(run["needs"])})' if run['needs'] else ''))
    outcomes['todo'] = [run['name'] for run in todo]
    return outcomes
  finished = set(outcomes['done'])
  progress = Progress(len(runs) - len(outcomes['running']), len(outcomes['done']))
  for wave in waves:
    ready = []
    for run in (r for r in todo if r['wave'] == wave):
      run_dir = os.path.join(workdir, run['name'])
      waiting = [need for need in run['needs'] if need not in finished]
      if waiting:
        print(f'run {run["name"]} is blocked: {", ".join(waiting)} did not finish; rerun the '
              'sweep once they are done', file=sys.stderr)
        outcomes['blocked'].append(run['name'])
        progress.ended(run['name'], 'blocked')
        continue
      if run['before'] is not None:
        try:
          run['before'](run_dir, workdir)
        except Exception as e:  # noqa: BLE001 (its run fails, the sweep goes on)
          print(f'run {run["name"]} failed before training: {type(e).__name__}: {e}',
                file=sys.stderr)
          outcomes['failed'].append(run['name'])
          progress.ended(run['name'], 'failed')
          continue
      ready.append((run['name'], _spec(run), _override_strings(run, workdir), run_dir))
    by_name = {run['name']: run for run in todo}
    for name, outcome in _execute(groups_of(ready, by_name, vectorize), executor, parallel,
                                  module, workdir, progress):
      outcomes[outcome].append(name)
      if outcome == 'trained':
        finished.add(name)
  print('sweep finished: ' + ', '.join(f'{len(v)} {k}' for k, v in outcomes.items() if v))
  print(table_figures([workdir_lib.read_summary(os.path.join(workdir, run['name']))
                       for run in runs], len(outcomes['trained']), progress.elapsed()))
  return outcomes


def _execute(groups: list[list[tuple[str, str, list[str], str]]], executor: str, parallel: int,
             module: Any, workdir: str, progress: Progress) -> list[tuple[str, str]]:
  """Trains the groups of jobs (name, spec, overrides, run_dir) of one wave, each group in one
  program; [(name, outcome)], each also reported to `progress` as it ends."""
  results: list[tuple[str, str]] = []
  if not groups:
    return results

  def ended(new: list[tuple[str, str]]) -> None:
    for name, outcome in new:
      progress.ended(name, outcome)
    results.extend(new)

  columns = [list(column) for column in (zip(*group, strict=True) for group in groups)]
  if executor == 'inline':
    for names, specs, overrides, run_dirs in columns:
      progress.starting(names, run_dirs)
      try:
        ended(list(zip(names, logged_train_runs(list(specs), list(overrides), list(run_dirs)),
                       strict=True)))
      except runtime.Interrupted:
        raise   # SIGTERM / SIGINT stops the sweep, not just its run (checkpointed: resumable).
      except Exception as e:  # noqa: BLE001 (one failed run must not stop the sweep)
        print(f'run {", ".join(names)} failed: {type(e).__name__}: {e}', file=sys.stderr)
        ended([(name, 'failed') for name in names])
  elif executor == 'process':
    def subprocess_group(names, specs, overrides, run_dirs):
      progress.starting(names, run_dirs)
      return _subprocess_runs(list(specs), list(overrides), list(run_dirs))

    with concurrent.futures.ThreadPoolExecutor(max(parallel, 1)) as pool:
      futures = {pool.submit(subprocess_group, *column): column[0] for column in columns}
      for future in concurrent.futures.as_completed(futures):
        ended(_outcomes(future, futures[future]))
  else:
    import submitit  # An optional dependency, for these two executors only.
    folder = os.path.join(workdir, '.submitit')
    submit = (submitit.LocalExecutor(folder=folder) if executor == 'submitit_local'
              else submitit.AutoExecutor(folder=folder, cluster='slurm'))
    submit.update_parameters(**({'timeout_min': 60} | getattr(module, 'SLURM', {}))
                             if executor == 'slurm' else {'timeout_min': 60})
    futures = {}
    # The job unpickles `logged_train_runs`, so it must import this package whatever directory
    # it starts in (an uninstalled checkout included): the job inherits this PYTHONPATH.
    saved = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = os.pathsep.join([ROOT] + ([saved] if saved else []))
    try:
      for names, specs, overrides, run_dirs in columns:
        progress.starting(names, run_dirs)
        futures[submit.submit(logged_train_runs, list(specs), list(overrides),
                              list(run_dirs))] = names
    finally:
      if saved is None:
        os.environ.pop('PYTHONPATH')
      else:
        os.environ['PYTHONPATH'] = saved
    for job, names in futures.items():
      ended(_outcomes(job, names))
  return results


def _outcomes(job: Any, names: tuple[str, ...]) -> list[tuple[str, str]]:
  """The outcomes of a finished future or submitit job; all 'failed' (printed) if it raised."""
  try:
    return list(zip(names, job.result(), strict=True))
  except Exception as e:  # noqa: BLE001
    print(f'run {", ".join(names)} failed: {type(e).__name__}: {_last_error_line(str(e))}',
          file=sys.stderr)
    return [(name, 'failed') for name in names]


def _last_error_line(message: str) -> str:
  """The line of an error message that says what went wrong: for a submitit job, the last line
  of the job's traceback (its message ends with the paths of the job's logs, which follow)."""
  lines = [line for line in message.splitlines() if line.strip()]
  if not lines:
    return ''
  rules = [i for i, line in enumerate(lines) if set(line.strip()) == {'-'}]
  if len(rules) >= 2 and rules[1] > rules[0] + 1:
    logs = [line.strip()[2:] for line in lines[rules[1] + 1:] if line.strip().startswith('- ')]
    return lines[rules[1] - 1].strip() + (f' (job log: {logs[0]})' if logs else '')
  return lines[-1].strip()


def main(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog='transfer-jax sweep',
                          description=__doc__.splitlines()[0])
  parser.add_argument('sweep_file')
  parser.add_argument('--workdir', default='', help='default: runs/NAME')
  parser.add_argument('--executor', default='inline')
  parser.add_argument('--parallel', type=int, default=1, help='processes (--executor=process)')
  parser.add_argument('--dry_run', action='store_true', help='list what would run')
  parser.add_argument('--vectorize', type=int, default=1, metavar='K',
                      help='train up to K runs that differ only in seed, method.trade_off, '
                      'optimizer.learning_rate or optimizer.weight_decay together, vmapped')
  parser.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                      help='added to every run (and its name), e.g. total_steps=4')
  parser.add_argument('--only', action='append', default=[], metavar='KEY=VALUE',
                      help='only the runs with this label (repeatable), e.g. method=dann')
  args = parser.parse_args(argv)
  name = os.path.splitext(os.path.basename(args.sweep_file))[0]
  workdir = args.workdir or os.path.join('runs', name)
  try:
    if args.vectorize < 1:
      raise UserError(f'--vectorize={args.vectorize}: give the number of runs to train together '
                      '(1: one at a time)')
    outcomes = run_sweep(args.sweep_file, workdir, args.executor, args.parallel, args.dry_run,
                         parse_overrides(args.override), args.vectorize, args.only)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except runtime.Interrupted as e:
    print(f'sweep stopped: {e}; rerun the sweep to go on', file=sys.stderr)
    return 128 + e.signum
  return 1 if outcomes['failed'] else 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
