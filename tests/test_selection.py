"""Label-free model-selection criteria: hand-checked values and properties, and their logging
in the training loop."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_digits
from transfer_jax import selection
from transfer_jax.training import train

RNG = np.random.default_rng(0)


def test_entropy_criterion_by_hand():
  logits = jnp.log(jnp.array([[0.5, 0.5], [1.0 - 1e-9, 1e-9]]))
  np.testing.assert_allclose(selection.mean_entropy(logits), np.log(2) / 2, atol=1e-6)


def test_snd_is_higher_for_clustered_features_and_matches_a_hand_value():
  points = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  sim = np.asarray(points @ points.T) / 0.05
  np.fill_diagonal(sim, -np.inf)
  p = np.exp(sim - sim.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  expected = -np.mean(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), 1))
  np.testing.assert_allclose(selection.soft_neighbourhood_density(points), expected, rtol=1e-5)
  # Two tight clusters (each point has near neighbours) vs uniform directions.
  clustered = np.concatenate([RNG.normal([5, 0], 0.1, (20, 2)), RNG.normal([0, 5], 0.1, (20, 2))])
  angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
  spread = np.stack([np.cos(angles), np.sin(angles)], 1)
  assert (selection.soft_neighbourhood_density(jnp.asarray(clustered))
          > selection.soft_neighbourhood_density(jnp.asarray(spread)))


def test_importance_weights_follow_the_density_ratio():
  source = RNG.normal(0.0, 1.0, (2000, 1)).astype(np.float32)
  target = RNG.normal(1.0, 1.0, (2000, 1)).astype(np.float32)
  points = np.array([[-1.0], [0.0], [1.0], [2.0]], np.float32)
  weights = selection.importance_weights(source, target, points, l2=0.0)
  exact = np.exp(points[:, 0] - 0.5)   # N(1,1) / N(0,1) = exp(x - 1/2).
  np.testing.assert_allclose(weights, exact, rtol=0.2)


def test_iwv_and_dev_by_hand():
  losses, weights = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.5, 1.5, 1.0, 1.0])
  assert selection.iwv_risk(losses, weights) == pytest.approx(np.mean(losses * weights))
  eta = -np.cov(losses * weights, weights)[0, 1] / np.var(weights, ddof=1)
  expected = np.mean(losses * weights) + eta * np.mean(weights) - eta
  assert selection.dev_risk(losses, weights) == pytest.approx(expected)
  # With weights all 1 both reduce to the plain validation loss.
  assert selection.dev_risk(losses, np.ones(4)) == pytest.approx(np.mean(losses))


def test_best_step_picks_the_maximum_of_a_criterion():
  records = [{'step': 1, 'select/snd': 0.2}, {'step': 2, 'select/snd': 0.5},
             {'step': 3}, {'step': 4, 'select/snd': 0.5}]
  assert selection.best_step(records, 'select/snd')['step'] == 2
  assert selection.best_step(records, 'select/dev') is None


@pytest.mark.slow
def test_the_loop_logs_every_criterion_at_each_evaluation(tmp_path):
  # target/oracle_val is evaluated without being named in eval_splits (the tables' oracle).
  config = tiny_digits(**{'selection': True, 'data.source.val_fraction': 0.2,
                          'data.target.val_fraction': 0.2, 'eval_splits': "('target/test',)"})
  train.train_and_evaluate(config, str(tmp_path))
  with open(os.path.join(tmp_path, 'metrics.jsonl')) as f:
    evals = [r for r in map(json.loads, f) if 'target/test/accuracy' in r]
  assert len(evals) == 2
  for record in evals:
    assert {f'select/{c}' for c in selection.CRITERIA} <= set(record)
    assert all(np.isfinite(record[f'select/{c}']) for c in selection.CRITERIA)
    assert 'target/oracle_val/accuracy' in record
  with pytest.raises(ValueError, match='val_fraction'):
    train.train_and_evaluate(tiny_digits(selection=True), str(tmp_path / 'no_val'))
