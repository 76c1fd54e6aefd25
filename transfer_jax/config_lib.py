"""Loading `configs/digits.py[:ARG]` files and applying `--config.a.b=VALUE` overrides.

A config file defines `get_config(arg: str | None) -> ConfigDict`. `arg` is a comma-separated
list of `key=value` items or bare flags (`tiny`), parsed by `parse_arg` against typed defaults.
The loaded config is locked: an override of an unknown key fails with the closest valid keys.
"""

import ast
import difflib
import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

# The schema lives in config_schema; configs import its builders from here as well.
from transfer_jax.config_schema import (
    ADDED_KEYS,
    METHOD_DEFAULTS,
    base_config,
    data_config,
    domain_config,
    model_config,
    task_config,
    tiny_cadence,
    with_added_keys,
)
from transfer_jax.errors import UserError

__all__ = ['ADDED_KEYS', 'METHOD_DEFAULTS', 'ROOT', 'apply_override', 'base_config', 'check_key',
           'data_config', 'domain_config', 'flat_keys', 'load_config', 'model_config',
           'parse_arg', 'resolve_config_path', 'saved_config', 'task_config', 'tiny_cadence',
           'with_added_keys']


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses 'tiny,method=dann' into a ConfigDict typed like `defaults` (bare names mean True)."""
  result = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, eq, value = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise UserError(f'unknown config argument {key!r}; valid ones are {sorted(defaults)}')
    result[key] = _parse_value(value.strip() if eq else 'True', defaults[key], key)
  return result


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_config_path(path: str) -> str:
  """`path` as given, else relative to the repository (`configs/digits.py` from anywhere with an
  editable install), else a one-line error."""
  if os.path.exists(path):
    return path
  in_repo = os.path.join(ROOT, path)
  if not os.path.isabs(path) and os.path.exists(in_repo):
    return in_repo
  raise UserError(f'config file {path!r} not found; pass --config=configs/digits.py[:ARG] or '
                  '--config=WORKDIR/config.json (`transfer-jax list configs` lists them)')


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Loads 'path/to/config.py[:arg]' (or a run's 'WORKDIR/config.json', or WORKDIR itself),
  locks it, and applies 'a.b=value' overrides."""
  path, _, arg = spec.partition(':')
  path = resolve_config_path(path)
  if os.path.isdir(path) or path.endswith('.json'):
    if arg:
      raise UserError(f'{spec}: a saved config.json takes no :ARG; change fields with '
                      '--config.KEY=VALUE')
    config = saved_config(path)
  else:
    module = _load_module(path)
    try:
      config = module.get_config(arg or None)
    except UserError:
      raise
    except Exception as e:  # noqa: BLE001 (a bug in the config file: say where)
      raise UserError(f'{path}: get_config({arg!r}) raised {type(e).__name__}: {e}; fix the '
                      'config file') from None
    if not isinstance(config, ml_collections.ConfigDict):
      raise UserError(f'{path}: get_config returned {type(config).__name__}, not an '
                      'ml_collections.ConfigDict; return the config')
  config.lock()
  for override in overrides:
    apply_override(config, override)
  return config


def _load_module(path: str) -> Any:
  if not path.endswith('.py'):
    raise UserError(f'{path} is not a config file; give configs/digits.py[:ARG] or a run\'s '
                    'WORKDIR/config.json')
  module_spec = importlib.util.spec_from_file_location(
      f'transfer_jax_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UserError(f'{path}: syntax error at line {e.lineno}: {e.msg}; fix the config '
                    'file') from None
  except Exception as e:  # noqa: BLE001 (an import error or a bug in the config file)
    raise UserError(f'{path}: loading it raised {type(e).__name__}: {e}; fix the config '
                    'file') from None
  if not hasattr(module, 'get_config'):
    raise UserError(f'{path} defines no get_config(arg) function')
  return module


def saved_config(path: str) -> ml_collections.ConfigDict:
  """The config a run saved (`WORKDIR/config.json`, or WORKDIR): JSON lists become tuples, as
  the configs write them, so a rerun from it matches the run it came from. Fields added since it
  was saved (ADDED_KEYS) get the value that reproduces it."""
  if os.path.isdir(path):
    path = os.path.join(path, 'config.json')
  try:
    with open(path) as f:
      saved = json.load(f)
  except OSError:
    raise UserError(f'no {path}; give the workdir of a run (it holds config.json)') from None
  except ValueError as e:
    raise UserError(f'{path} is not valid JSON ({e}); give the config.json a run wrote') from None
  if not isinstance(saved, dict):
    raise UserError(f'{path} holds no config (a JSON object); give the config.json a run wrote')

  def typed(value: Any) -> Any:
    if isinstance(value, dict):
      return ml_collections.ConfigDict({k: typed(v) for k, v in value.items()})
    if isinstance(value, list):
      return tuple(typed(v) for v in value)
    return value

  return typed(with_added_keys(saved))


def flat_keys(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  keys = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      keys += flat_keys(value, f'{prefix}{key}.')
    else:
      keys.append(f'{prefix}{key}')
  return keys


def check_key(config: ml_collections.ConfigDict, key: str) -> None:
  """A one-line error, with the closest valid keys, if `key` is no field of `config`."""
  valid = flat_keys(config)
  if key not in valid:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.7)
    hint = f'did you mean {" or ".join(close)}?' if close else f'valid keys: {", ".join(valid)}'
    raise UserError(f'unknown config key {key!r}; {hint}')


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
  """Sets `a.b=value` on a locked config, parsing `value` to the field's current type."""
  key, eq, value = override.partition('=')
  if not eq:
    raise UserError(f'override {override!r} needs the form --config.KEY=VALUE')
  check_key(config, key)
  *parents, leaf = key.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = _parse_value(value, node[leaf], key)


def _parse_value(text: str, current: Any, key: str) -> Any:
  try:
    if isinstance(current, bool):
      if text.lower() in ('true', '1', 'yes'):
        return True
      if text.lower() in ('false', '0', 'no'):
        return False
      raise ValueError(text)
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return text
    if isinstance(current, (tuple, list)):
      parsed = ast.literal_eval(text)
      parsed = parsed if isinstance(parsed, (tuple, list)) else (parsed,)
      return type(current)(parsed)
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  except (ValueError, SyntaxError):
    raise UserError(f'config.{key}={text!r} is not a valid {type(current).__name__} '
                    f'(current value {current!r})') from None
