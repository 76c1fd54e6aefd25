"""Mixed precision (config.model.dtype='bfloat16'): the backbones compute in bfloat16 while their
parameters, and so the optimizer state, stay float32; a bfloat16 run trains and ends near the
float32 run on CPU."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_digits
from transfer_jax import config_lib
from transfer_jax.checkpoint import load_params
from transfer_jax.errors import UserError
from transfer_jax.models import build_model
from transfer_jax.models.lenet import LeNetFeatures
from transfer_jax.models.resnet import ResNetFeatures
from transfer_jax.models.vgg import VGGFeatures
from transfer_jax.training import train

# Small members of each family (the full-size ones compute the same way, only more of it).
BACKBONES = {
    'resnet': (lambda dtype: ResNetFeatures(depth=18, stem='cifar', widths=(4, 8, 8, 8),
                                            dtype=dtype), (2, 16, 16, 3)),
    'resnet50': (lambda dtype: ResNetFeatures(depth=50, stem='imagenet', widths=(4, 4, 4, 4),
                                              dtype=dtype), (2, 32, 32, 3)),
    'vgg': (lambda dtype: VGGFeatures(layers=(8, 'M', 8, 'M', 8, 'M', 8, 'M', 8, 'M'), hidden=16,
                                      dropout=0.0, dtype=dtype), (2, 32, 32, 3)),
    'lenet': (lambda dtype: LeNetFeatures(conv=(4, 8), dense=(16,), bottleneck=8, dtype=dtype),
              (4, 28, 28, 1)),
}


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n == 'resnet50' else n
                                  for n in sorted(BACKBONES)])
def test_bfloat16_backbones_compute_in_bfloat16_with_float32_parameters(name):
  make, shape = BACKBONES[name]
  images = jax.random.uniform(jax.random.key(0), shape)
  variables = make(jnp.float32).init(jax.random.key(1), images)
  mixed = make(jnp.bfloat16)
  # The same parameter tree, all float32: checkpoints and optimizer state do not change.
  mixed_variables = mixed.init(jax.random.key(1), images)
  assert jax.tree.structure(mixed_variables) == jax.tree.structure(variables)
  assert {leaf.dtype for leaf in jax.tree.leaves(mixed_variables)} == {jnp.dtype('float32')}
  jaxpr = str(jax.make_jaxpr(lambda v: mixed.apply(v, images))(variables))
  assert 'conv_general_dilated' in jaxpr and 'bf16' in jaxpr
  want = make(jnp.float32).apply(variables, images)
  got = mixed.apply(variables, images)
  assert got.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 per operation).
  scale = float(jnp.max(jnp.abs(want)))
  assert scale > 0 and float(jnp.max(jnp.abs(got - want))) < 0.05 * scale


@pytest.mark.slow
def test_a_bfloat16_run_trains_and_stays_near_the_float32_run(tmp_path):
  steps = dict(total_steps=60, log_every_steps=20, eval_every_steps=60,
               checkpoint_every_steps=60, **{'optimizer.learning_rate': 0.05})
  records = {}   # Source-only: no adversarial game to amplify rounding differences.
  for dtype in ('float32', 'bfloat16'):
    workdir = str(tmp_path / dtype)
    train.train_and_evaluate(tiny_digits('method=source_only', **steps, **{'model.dtype': dtype}),
                             workdir)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records[dtype] = [json.loads(line) for line in f]
    assert {leaf.dtype for leaf in jax.tree.leaves(load_params(workdir))} == {
        np.dtype('float32')}
  for dtype, lines in records.items():   # Both train: the source loss falls.
    losses = [r['source/train/loss'] for r in lines if 'source/train/loss' in r]
    assert losses[-1] < 0.8 * losses[0], (dtype, losses)
  # Within a stated tolerance of float32 after 60 steps: source loss within 15 % and target
  # accuracy within 5 points (measured: 0.601 / 0.572 and 60.2 / 60.7 %).
  final = {dtype: lines[-1] for dtype, lines in records.items()}
  np.testing.assert_allclose(final['bfloat16']['source/test/loss'],
                             final['float32']['source/test/loss'], rtol=0.15)
  assert abs(final['bfloat16']['target/test/accuracy']
             - final['float32']['target/test/accuracy']) < 0.05, final


def test_unknown_or_unsupported_dtypes_are_refused():
  with pytest.raises(UserError, match="unknown config.model.dtype='float16'"):
    build_model(config_lib.model_config('resnet18', dtype='float16'), 10)
  with pytest.raises(UserError, match="'bfloat16' is implemented for the backbones"):
    build_model(config_lib.model_config('mlp', dtype='bfloat16'), 10)
