"""The `transfer-jax` command: one entry point for every tool of the package.

  transfer-jax train  --config=configs/digits.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]
  transfer-jax sweep  experiments/t1_mnist_usps_tllib.py [--executor=...] [--only KEY=VALUE ...]
  transfer-jax report experiments/t1_mnist_usps_tllib.py [--workdir=DIR] [--experiments]
  transfer-jax plots  curves|sweep|tsne|pad ...
  transfer-jax probe  --config=... --workdir=DIR [--raw]
  transfer-jax list   configs|methods|datasets|rules

Each subcommand is the module of the same name (`python -m transfer_jax.main`, `.sweep`,
`.report`, `.plots`, `.probe`), with the same flags; `transfer-jax SUBCOMMAND --help` prints them.
"""

import ast
import glob
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence

from transfer_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTS = ('configs', 'methods', 'datasets', 'rules')


def _first_sentence(text: str | None) -> str:
  """The first sentence of a docstring, on one line."""
  text = ' '.join((text or '').split())
  match = re.match(r'(.+?[.:])(\s|$)', text)
  return (match.group(1) if match else text).rstrip(':.') or '(no description)'


def list_configs(root: str = ROOT) -> list[tuple[str, str]]:
  """(path, the title of its docstring) of every config file."""
  entries = []
  for path in sorted(glob.glob(os.path.join(root, 'configs', '*.py'))):
    with open(path) as f:
      doc = ast.get_docstring(ast.parse(f.read()))
    title = (doc or '').strip().split('\n\n')[0]
    entries.append((os.path.relpath(path, root), ' '.join(title.split()) or '(no docstring)'))
  return entries


def list_methods() -> list[tuple[str, str]]:
  """(config.method.name, the method and its paper) from objectives.METHODS."""
  from transfer_jax.objectives.methods import METHODS  # Here: `transfer-jax --help` needs no jax.
  entries = []
  for name, method in METHODS.items():
    loss = getattr(method.loss, 'func', method.loss)  # functools.partial (cdan_e).
    entries.append((name, _first_sentence(inspect.getdoc(loss))))
  return entries


def list_datasets() -> list[tuple[str, str]]:
  """(name, its stored splits and description) of every named dataset."""
  from transfer_jax.data.builders import DATASETS  # Here: `transfer-jax --help` needs no TFDS.
  entries = []
  for name, entry in DATASETS.items():
    description = entry.builder.DESCRIPTION or _first_sentence(entry.builder.__doc__)
    if entry.folder:  # An image-folder benchmark: say where its images are read from.
      description = f'images in MANUAL_DIR/{entry.folder}/{entry.config}/CLASS/*, RGB'
    entries.append((name, f'splits {", ".join(entry.splits)}; {description.rstrip(".")}'))
  entries += [('npz:PATH', 'splits train (and test) from x_train, y_train (x_test, y_test)'),
              ('folder:ROOT/DOMAIN', 'split train: any image folder ROOT/DOMAIN/CLASS/*.jpg')]
  return entries


def list_rules() -> list[tuple[str, str]]:
  """(rule, what it selects) of the report's model-selection rules."""
  from transfer_jax import report  # Here: `transfer-jax --help` needs no jax.
  rules = [*report.RULES, *(r for r in report.RULE_DESCRIPTIONS if r not in report.RULES)]
  return [(rule, report.RULE_DESCRIPTIONS.get(rule)
           or f'the evaluation maximising {report.RULES[rule]}') for rule in rules]


def list_command(argv: Sequence[str]) -> int:
  """`transfer-jax list WHAT`: one line per entry, its name and a one-line description."""
  if len(argv) != 1 or argv[0] not in LISTS:
    given = ' '.join(argv) or 'nothing'
    print(f'error: list what? give one of {", ".join(LISTS)} (got {given}); e.g. '
          '`transfer-jax list configs`', file=sys.stderr)
    return 2
  entries = {'configs': list_configs, 'methods': list_methods, 'datasets': list_datasets,
             'rules': list_rules}[argv[0]]()
  width = max(len(name) for name, _ in entries)
  for name, description in entries:
    print(f'{name.ljust(width)}  {description}')
  return 0


def _commands() -> dict[str, Callable[[Sequence[str]], int]]:
  # Each subcommand's module is imported only when it runs (jax and TFDS take seconds).
  def run(module: str) -> Callable[[Sequence[str]], int]:
    def call(argv: Sequence[str]) -> int:
      return importlib.import_module(f'transfer_jax.{module}').main(list(argv))
    return call

  return {'train': run('main'), 'sweep': run('sweep'), 'report': run('report'),
          'plots': run('plots'), 'probe': run('probe'), 'list': list_command}


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  commands = _commands()
  if not argv or argv[0] in ('-h', '--help', 'help'):
    print(__doc__)
    return 0 if argv else 2
  command, rest = argv[0], argv[1:]
  if command not in commands:
    print(f'error: unknown command {command!r}; choose one of {", ".join(commands)} '
          '(`transfer-jax --help`)', file=sys.stderr)
    return 2
  try:
    return int(commands[command](rest) or 0)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


def entry_point() -> None:
  """The console script of pyproject.toml."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    code = main()
    sys.stdout.flush()
  except BrokenPipeError:  # `transfer-jax list configs | head`: the reader stopped early.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 0
  sys.exit(code)


if __name__ == '__main__':
  entry_point()
