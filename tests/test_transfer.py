"""Parameter transfer: the pretrained loader, optimizer groups (freeze, multipliers, unfreezing),
and pretrain -> fine-tune runs with the distance regularizers, on real digits (tiny mode)."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import ROOT, TFDS_DIR, tiny_digits
from transfer_jax import config_lib
from transfer_jax.checkpoint import load_params
from transfer_jax.training import hooks, train
from transfer_jax.training.optimizer import build_optimizer
from transfer_jax.transfer import pretrained as pretrained_lib

SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'datasets')
MODEL = {'params/backbone/conv/kernel': (3, 3, 1, 4), 'params/classifier/out/kernel': (4, 10),
         'params/classifier/out/bias': (10,)}


def _init_cfg(**overrides):
  cfg = ml_collections.ConfigDict(dict(path='ckpt', load='.*', skip='', rename=(),
                                       allow_missing=False, allow_unused=False))
  cfg.update(overrides)
  return cfg


def _checkpoint(**shapes):
  return {name: np.ones(shape, np.float32) for name, shape in shapes.items()}


def test_merge_plan_loads_skips_and_reports_every_leaf():
  checkpoint = _checkpoint(**{'params/backbone/conv/kernel': (3, 3, 1, 4),
                              'params/classifier/out/kernel': (4, 5),
                              'params/classifier/out/bias': (5,)})
  plan = pretrained_lib.merge_plan(_init_cfg(skip='params/classifier/out/.*'), MODEL, checkpoint)
  assert set(plan.values) == {'params/backbone/conv/kernel'}
  statuses = {name: status for name, status, _ in plan.table}
  assert statuses == {'params/backbone/conv/kernel': 'loaded',
                      'params/classifier/out/kernel': 'skipped',
                      'params/classifier/out/bias': 'skipped'}
  assert plan.summary() == '1 loaded, 2 skipped'


def test_merge_plan_names_every_mismatch_in_one_error():
  checkpoint = _checkpoint(**{'params/backbone/conv/kernel': (5, 5, 1, 4),
                              'params/extra/w': (2,)})
  with pytest.raises(ValueError) as info:
    pretrained_lib.merge_plan(_init_cfg(), MODEL, checkpoint)
  message = str(info.value)
  assert '\n' not in message
  assert 'params/backbone/conv/kernel has shape (5, 5, 1, 4) in the checkpoint' in message
  assert 'params/classifier/out/kernel missing from the checkpoint' in message
  assert 'params/extra/w in the checkpoint has no place in the model' in message


def test_merge_plan_renames_before_matching():
  checkpoint = _checkpoint(**{'params/features/conv/kernel': (3, 3, 1, 4)})
  plan = pretrained_lib.merge_plan(
      _init_cfg(rename=('params/features/(.*)=>params/backbone/\\1',), allow_missing=True),
      MODEL, checkpoint)
  assert set(plan.values) == {'params/backbone/conv/kernel'}


def test_freeze_keeps_no_state_and_multipliers_scale_the_step():
  params = {'backbone': {'w': jnp.ones(3)}, 'classifier': {'w': jnp.ones(2)}}
  cfg = config_lib.base_config('source_only', tiny=True).optimizer
  cfg.update(dict(name='sgd', momentum=0.9, schedule='constant', learning_rate=0.1,
                  weight_decay=0.0, freeze='backbone/.*'))
  optimizer = build_optimizer(cfg, 10, params)
  state = optimizer.init(params)
  buffers = [x.size for x in jax.tree.leaves(state) if getattr(x, 'ndim', 0) > 0]
  assert sum(buffers) == 2, 'only the 2 trainable values carry momentum (counters aside)'
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizer.update(grads, state, params)
  np.testing.assert_array_equal(updates['backbone']['w'], 0.0)
  cfg.update(dict(freeze='', lr_multipliers=(('backbone/.*', 0.1),)))
  optimizer = build_optimizer(cfg, 10, params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  np.testing.assert_allclose(updates['backbone']['w'], -0.01, rtol=1e-6)
  np.testing.assert_allclose(updates['classifier']['w'], -0.1, rtol=1e-6)


def test_gradual_unfreezing_moves_nothing_before_its_step():
  params = {'backbone': {'w': jnp.ones(3)}, 'classifier': {'w': jnp.ones(2)}}
  cfg = config_lib.base_config('source_only', tiny=True).optimizer
  cfg.update(dict(name='sgd', momentum=0.9, schedule='constant', learning_rate=0.1,
                  weight_decay=1e-2, unfreeze=(('backbone/.*', 3),)))
  optimizer = build_optimizer(cfg, 10, params)
  state = optimizer.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  moved = []
  for _ in range(4):
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    moved.append(float(jnp.abs(params['backbone']['w'] - 1).max()))
  assert moved[:3] == [0.0, 0.0, 0.0] and moved[3] > 0   # Neither momentum nor decay leaked.


def test_bad_group_patterns_are_clear_errors():
  params = {'backbone': {'w': jnp.ones(3)}}
  cfg = config_lib.base_config('source_only', tiny=True).optimizer
  cfg.lr_multipliers = (('head/.*', 0.1),)
  with pytest.raises(ValueError, match="pattern 'head/.\\*' matches no parameter"):
    build_optimizer(cfg, 10, params)


@pytest.fixture(scope='module')
def pretrained_workdir(tmp_path_factory):
  """A tiny source-only digits run: the 'pretrained' model for the fine-tuning tests."""
  workdir = str(tmp_path_factory.mktemp('pretrain'))
  train.train_and_evaluate(tiny_digits('method=source_only'), workdir)
  return workdir


def _finetune(recipe, pretrained, tmp_path, **overrides):
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs USPS and MNIST in {SHARED_DATA}')
  extra = [f'{k}={v}' for k, v in overrides.items()]
  config = config_lib.load_config(
      os.path.join(ROOT, 'configs', f'usps_finetune.py:tiny,recipe={recipe}'),
      ['compilation_cache_dir=', f'data.data_dir={TFDS_DIR}', f'data.manual_dir={SHARED_DATA}',
       f'init_from.path={pretrained}', *extra])
  return config, train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_finetune_loads_everything_but_the_new_head(pretrained_workdir, tmp_path):
  # Seed 1: the fresh head then differs from the (barely trained, seed-0) pretrained one.
  _finetune('finetune', pretrained_workdir, tmp_path, total_steps=1, seed=1)
  table = (tmp_path / 'init_from.txt').read_text()
  assert 'params/backbone/conv1/kernel' in table and 'skipped' in table
  source = load_params(pretrained_workdir)
  tuned = load_params(str(tmp_path))
  # One SGD step from theta_S: conv1 moved only a little; the head is new.
  drift = np.abs(tuned['backbone']['conv1']['kernel'] - source['backbone']['conv1']['kernel'])
  assert 0 < drift.max() < 0.05
  assert not np.allclose(tuned['classifier']['out']['kernel'],
                         source['classifier']['out']['kernel'], atol=0.05)


@pytest.mark.slow
def test_head_only_leaves_the_backbone_exactly_at_theta_s(pretrained_workdir, tmp_path):
  _finetune('head_only', pretrained_workdir, tmp_path)
  source, tuned = load_params(pretrained_workdir), load_params(str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, tuned['backbone'], source['backbone'])


@pytest.mark.slow
@pytest.mark.parametrize('recipe', ['l2_sp', 'fisher_sp', 'lp_ft'])
def test_regularised_recipes_run_and_log_their_terms(recipe, pretrained_workdir, tmp_path):
  _, summary = _finetune(recipe, pretrained_workdir, tmp_path)
  assert np.isfinite(summary['final']['target/test/accuracy'])
  with open(tmp_path / 'metrics.jsonl') as f:
    records = [json.loads(line) for line in f]
  keys = set().union(*records)
  if recipe != 'lp_ft':
    assert 'regularizer/to_source' in keys and 'target/train/loss' in keys


def test_transfer_recipe_without_a_pretrained_path_is_refused(tmp_path):
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs USPS and MNIST in {SHARED_DATA}')
  with pytest.raises(ValueError, match='set --config.init_from.path'):
    _finetune('l2_sp', '', tmp_path)


@pytest.mark.slow
def test_cifar10_to_cifar100_pretrain_then_finetune_with_a_new_head(tmp_path):
  """Both stages in tiny mode on archives in the official binary format; 10 -> 100 classes."""
  from test_cifar import BUILDERS, archive_path, release_files, write_archive
  manual = str(tmp_path / 'manual')
  for builder in BUILDERS.values():
    files, _ = release_files(builder)
    write_archive(archive_path(manual, builder), builder.MEMBER_FOLDER, files)
  spec = os.path.join(ROOT, 'configs', 'cifar10_to_cifar100.py:tiny,stage=')
  common = ['compilation_cache_dir=', f'data.data_dir={tmp_path}/tfds', f'data.manual_dir={manual}']
  pretrain = str(tmp_path / 'pretrain')
  train.train_and_evaluate(config_lib.load_config(spec + 'pretrain', common), pretrain)
  finetune = str(tmp_path / 'finetune')
  summary = train.train_and_evaluate(config_lib.load_config(
      spec + 'finetune', [*common, f'init_from.path={pretrain}']), finetune)
  params = load_params(finetune)
  assert params['classifier']['out']['kernel'].shape == (512, 100)
  assert 'target/oracle_val/accuracy' in summary['final']
  assert os.listdir(os.path.join(finetune, 'best')), 'the best-on-validation checkpoint is kept'
  with open(os.path.join(finetune, 'init_from.txt')) as f:
    table = f.read()
  assert 'params/classifier/out/kernel' in table and 'skipped' in table


@pytest.mark.slow
def test_imagefolder_resnet50_config_on_a_folder_the_test_writes(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  for domain in ('site_a', 'site_b'):
    for label, name in enumerate(('cat', 'dog', 'owl')):
      os.makedirs(tmp_path / 'photos' / domain / name)
      for i in range(8):
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) // (label + 1)
        Image.fromarray(pixels).save(tmp_path / 'photos' / domain / name / f'{i}.jpg')
  config = config_lib.load_config(os.path.join(ROOT, 'configs', 'imagefolder_resnet50.py:tiny'), [
      'compilation_cache_dir=', f'data.data_dir={tmp_path}/tfds',
      f'data.target.name=folder:{tmp_path}/photos/site_a'])
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['steps'] == config.total_steps
  assert {'target/oracle_val/accuracy', 'target/test/accuracy'} <= set(summary['final'])


def _batch_norm_domains():
  """Two feature domains whose inputs differ by a shift: BatchNorm statistics must follow it."""
  from transfer_jax import data
  rng = np.random.default_rng(0)
  for name, shift in (('bn_source', 0.0), ('bn_target', 3.0)):
    labels = np.arange(256) % 2
    features = (rng.normal(size=(256, 6)) + shift + labels[:, None]).astype(np.float32)
    data.register_arrays(name, {'train': {'features': features, 'label': labels}})


def _bn_config(batch_norm, **extra):
  _batch_norm_domains()
  config = config_lib.load_config(os.path.join(ROOT, 'configs', 'amazon_reviews.py:tiny'), [
      'compilation_cache_dir=', 'data.source.name=bn_source', 'data.target.name=bn_target',
      'data.source.test_split=train', 'data.target.test_split=train',
      'model.backbone_batch_norm=True', 'model.backbone_hidden=(4,)', 'model.adabn_batches=40',
      f'model.batch_norm={batch_norm}', *[f'{k}={v}' for k, v in extra.items()]])
  return config


def test_frozen_batch_norm_keeps_the_transferred_statistics(tmp_path):
  config = _bn_config('train', **{'method.name': 'source_only'})
  train.train_and_evaluate(config, str(tmp_path / 'source'))
  source_stats = pretrained_lib.read_checkpoint(ml_collections.ConfigDict(
      dict(path=str(tmp_path / 'source'), torch_arch='', best=False, step=-1)))
  frozen = _bn_config('frozen', **{'method.name': 'source_only',
                                   'init_from.path': str(tmp_path / 'source')})
  train.train_and_evaluate(frozen, str(tmp_path / 'frozen'))
  from transfer_jax.checkpoint import load_state
  stats = load_state(str(tmp_path / 'frozen' / 'checkpoints'))['model_state']['batch_stats']
  np.testing.assert_array_equal(stats['backbone']['bn0']['mean'],
                                source_stats['batch_stats/backbone/bn0/mean'])


@pytest.mark.slow
def test_adabn_evaluates_the_target_with_target_statistics(tmp_path):
  """With inputs shifted by +3 on the target, AdaBN's re-estimated means follow the shift, and
  target accuracy uses them (source-only training statistics are kept for the source)."""
  from transfer_jax import data as data_lib
  from transfer_jax.training.parallel import make_mesh
  from transfer_jax.training.program import build_program
  config = _bn_config('adabn', **{'method.name': 'source_only'})
  mesh = make_mesh(1)
  target = data_lib.load_domain(config.data.target, config.data, 'target')
  program = build_program(config, mesh, (6,), 2)
  state = program.init_state(jax.random.key(0))
  adapted = hooks.AdaBN(program, target, mesh, {}).for_target(state, config)
  kernel = np.asarray(state.params['backbone']['dense0']['kernel'])
  bias = np.asarray(state.params['backbone']['dense0']['bias'])
  inputs = np.concatenate([b['input'][b['mask']] for b in
                           data_lib.eval_batches(target.splits['train'], target.batch_fn, 64)])
  expected_mean = (inputs @ kernel + bias).mean(0)
  np.testing.assert_allclose(adapted.model_state['batch_stats']['backbone']['bn0']['mean'],
                             expected_mean, atol=0.15)
  np.testing.assert_array_equal(state.model_state['batch_stats']['backbone']['bn0']['mean'], 0.0)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary['final']['target/test/accuracy'])
