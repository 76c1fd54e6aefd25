"""Passes over data outside the training step, each on one run's state: the diagonal Fisher
before step 0 (Fisher-SP), AdaBN's target BatchNorm statistics at evaluation, and SHOT's
clustering of the target features."""

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax.training import parallel
from transfer_jax.training.step import STREAMS


def estimate_fisher(program, state, source: data_lib.Domain, config: ml_collections.ConfigDict,
                    mesh: Mesh, process: dict[str, int]):
  """The diagonal Fisher at theta_S from `fisher_batches` source batches, scaled to mean 1 over
  the transferred parameters so that Fisher-SP's alpha is on L2-SP's scale."""
  iterator = data_lib.train_iterator(source.splits['train'], source.batch_fn, config.batch_size,
                                     config.seed, stream=len(STREAMS), **process)
  total, count = None, 0
  for _ in range(config.regularizer.fisher_batches):
    sums = program.fisher_step(state, parallel.to_global(next(iterator), mesh))
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    count += config.batch_size
  fisher = jax.tree.map(lambda x: x / count, total)
  mask = program.pretrained.loaded_mask(fisher) if program.pretrained else None
  leaves = [f for f, m in zip(jax.tree.leaves(fisher), jax.tree.leaves(mask) if mask else
                              [True] * len(jax.tree.leaves(fisher)), strict=True) if m]
  mean = sum(jnp.sum(f) for f in leaves) / sum(f.size for f in leaves)
  fisher = jax.tree.map(lambda f: f / jnp.maximum(mean, 1e-12), fisher)
  logging.info('estimated the diagonal Fisher on %d source examples (mean before scaling %.3g)',
               count, float(mean))
  return program.set_anchor(state, 'fisher', fisher)


def adapt_batch_stats(program, state, target: data_lib.Domain, config: ml_collections.ConfigDict,
                      mesh: Mesh, process: dict[str, int]):
  """AdaBN (Li et al. 2016, arXiv:1603.04779): a copy of `state` whose BatchNorm statistics are
  re-estimated on unlabelled target training batches (reset, then `adabn_batches` updates with
  the layers' momentum, so the start decays to 0.9^n). Training keeps its own statistics."""
  iterator = data_lib.train_iterator(target.splits['train'], target.unlabeled_fn,
                                     config.batch_size, config.seed, stream=len(STREAMS) + 1,
                                     **process)
  adapted = program.reset_batch_stats(state)
  for _ in range(config.model.adabn_batches):
    adapted = program.adabn_step(adapted, parallel.to_global(next(iterator), mesh))
  return adapted


def cluster_target(program, state, target: data_lib.Domain, config: ml_collections.ConfigDict,
                   mesh: Mesh, process: dict[str, int]):
  """SHOT's clustering of all target training data: centroids weighted by the predictions,
  then one hard k-means step; classes left without examples get a zero row (never assigned)."""
  centroids = None
  for _ in range(2):
    totals = None
    for batch in data_lib.eval_batches(target.splits['train'], target.unlabeled_fn,
                                       config.eval_batch_size, **process):
      sums = program.centroid_step(state, parallel.to_global(batch, mesh), centroids)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    centroids = totals['sums'] / jnp.maximum(totals['counts'], 1e-8)[:, None]
    centroids = jnp.where(totals['counts'][:, None] > 0, centroids, 0.0)
  return program.set_anchor(state, 'centroids', centroids)
