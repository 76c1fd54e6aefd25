"""The package's layers: each arrow goes one way.

Every module of transfer_jax is parsed with `ast` (nothing is imported) and its imports, at the
top and inside functions, make a graph between the package's nodes: a sub-package
(`training`, `transfer`, ...) or a top-level module (`cli`, `report`, ...). The test asserts
  (a) no function-local import, except of the heavy optional dependencies in OPTIONAL and the
      few commented EXCEPTIONS;
  (b) no cycle between nodes;
  (c) each node imports only from the layers below its own (LAYERS, bottom first).
"""

import ast
import pathlib

PACKAGE = 'transfer_jax'
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE

# Bottom first. A node may import from the layers below its own, never from its own or above.
LAYERS = (
    ('errors',),                       # UserError, the one-line argparse.
    ('config_schema',),                # The config's fields.
    ('config_lib', 'checkpoint'),      # Config files; the orbax checkpoint format.
    ('data', 'models'),
    ('objectives',),                   # Losses, methods, schedules, linear fits.
    ('selection', 'transfer', 'validation'),
    ('training',),                     # The loop, its step, workdir files, writers.
    ('features',),                     # Frozen-extractor features and linear probes.
    # The experiment layer, in the order its modules build on each other.
    ('main', 'sweep_file', 'sweep_worker', 'bench'),
    ('probe', 'sweep_progress'),
    ('sweep',),
    ('report',),
    ('plots_drawing',),                # Panels, legends, figure files (plots).
    ('plots_features',),               # t-SNE and proxy A-distance figures.
    ('plots',),
    ('cli',),                          # `transfer-jax`: dispatches to every command.
)

# Heavy optional dependencies that may be imported where they are used (top-level names).
OPTIONAL = {'torch', 'safetensors', 'matplotlib', 'submitit', 'tensorboard', 'tensorflow',
            'sklearn', 'mlxtend'}
# (module, imported module): why the import is inside a function.
EXCEPTIONS = {
    ('transfer_jax.cli', 'transfer_jax.objectives.methods'):
        '`transfer-jax --help` and `list configs` must not import jax',
    ('transfer_jax.cli', 'transfer_jax.data.builders'):
        '`transfer-jax --help` and `list configs` must not import TFDS',
    ('transfer_jax.cli', 'transfer_jax.report'):
        '`transfer-jax --help` and `list configs` must not import jax',
    ('transfer_jax.bench.first_step', 'transfer_jax.config_lib'):
        'the benchmark times these imports',
    ('transfer_jax.bench.first_step', 'transfer_jax.training.runtime'):
        'the benchmark times these imports',
    ('transfer_jax.bench.first_step', 'transfer_jax.training.train'):
        'the benchmark times these imports',
    ('transfer_jax.bench.common', 'jax'): 'bench.first_step imports it before timing imports',
    ('transfer_jax.bench.common', 'jax.numpy'): 'bench.first_step imports it before timing imports',
}
# Files being rewritten elsewhere: skipped until their imports follow the rules. Empty it.
PENDING: set[str] = set()


def _module_name(path: pathlib.Path) -> str:
  parts = (PACKAGE, *path.relative_to(ROOT).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _is_module(name: str) -> bool:
  relative = pathlib.Path(*name.split('.')[1:])
  return ((ROOT / relative).with_suffix('.py').is_file()
          or (ROOT / relative / '__init__.py').is_file())


def _imports(path: pathlib.Path):
  """(imported module, whether inside a function, line) of every import of `path`; `from M
  import N` imports M.N where that is a module of the package, else M."""
  name = _module_name(path)
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  tree = ast.parse(path.read_text(), str(path))

  def visit(node, local):
    for child in ast.iter_child_nodes(node):
      inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      if isinstance(child, ast.Import):
        for alias in child.names:
          yield alias.name, inner, child.lineno
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ''
        if child.level:
          parent = package.split('.')[:len(package.split('.')) - child.level + 1]
          base = '.'.join(parent + ([base] if base else []))
        for alias in child.names:
          full = f'{base}.{alias.name}'
          yield (full if full.startswith(PACKAGE) and _is_module(full) else base), inner, \
              child.lineno
      yield from visit(child, inner)

  yield from visit(tree, False)


def _files():
  return [p for p in sorted(ROOT.rglob('*.py'))
          if p.relative_to(ROOT).as_posix() not in PENDING]


def _node(module: str) -> str:
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else parts[0]


def _graph() -> dict[str, dict[str, list[str]]]:
  """{node: {imported node: ['file:line', ...]}} between different nodes of the package."""
  graph: dict[str, dict[str, list[str]]] = {}
  for path in _files():
    source = _node(_module_name(path))
    graph.setdefault(source, {})
    for imported, _, line in _imports(path):
      if imported.split('.')[0] != PACKAGE or imported == PACKAGE:
        continue
      target = _node(imported)
      if target != source:
        graph[source].setdefault(target, []).append(f'{path.relative_to(ROOT)}:{line}')
  return graph


def test_no_function_local_imports():
  found = []
  for path in _files():
    module = _module_name(path)
    for imported, local, line in _imports(path):
      if (local and imported.split('.')[0] not in OPTIONAL
          and (module, imported) not in EXCEPTIONS):
        found.append(f'{path.relative_to(ROOT)}:{line} imports {imported}')
  assert not found, ('function-local imports (move them to the top of the module, or add the '
                     'dependency to OPTIONAL / the import to EXCEPTIONS with a reason):\n'
                     + '\n'.join(found))


def test_no_cycle_between_nodes():
  graph = _graph()
  state: dict[str, str] = {}
  cycles = []

  def visit(node, stack):
    state[node] = 'open'
    for target in sorted(graph.get(node, {})):
      if state.get(target) == 'open':
        cycle = stack[stack.index(target):] + [target]
        cycles.append(' -> '.join(cycle) + '  (' + '; '.join(
            f'{a}->{b} at {graph[a][b][0]}' for a, b in zip(cycle, cycle[1:], strict=False))
            + ')')
      elif target not in state:
        visit(target, stack + [target])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, 'import cycles:\n' + '\n'.join(cycles)


def test_each_layer_imports_only_from_below():
  rank = {node: i for i, layer in enumerate(LAYERS) for node in layer}
  graph = _graph()
  unplaced = sorted(set(graph) - set(rank) - {PACKAGE})
  assert not unplaced, f'nodes in no layer (add them to LAYERS): {unplaced}'
  upward = [f'{source} -> {target} at {", ".join(where[:3])}'
            for source, targets in sorted(graph.items()) if source in rank
            for target, where in sorted(targets.items()) if rank[target] >= rank[source]]
  assert not upward, ('imports from the same or a higher layer (see LAYERS):\n'
                      + '\n'.join(upward))
