"""Hooks: passes over data outside the training step that a method, a regularizer or a model
setting declares, each on one run's state. The loop knows only the three moments:

  before_training(state, config)   once, on a fresh run (not on resume): Fisher-SP's Fisher
  before_step(state, config)       before the steps it is `due` at: SHOT's re-clustering
  for_target(state, config)        at evaluation, the state the target is evaluated with: AdaBN

`hooks_for` reads the declarations (`Regularizer.needs_fisher`, `Method.needs_centroids`,
`config.model.batch_norm == 'adabn'`) and builds the hooks with their jitted functions.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax.objectives import losses
from transfer_jax.objectives.self_training import nearest_centroid, shot_features
from transfer_jax.training import parallel
from transfer_jax.training.inputs import stream_seed
from transfer_jax.training.state import TrainState


class Hook:
  """A pass the loop runs at one of its moments; the defaults do nothing."""

  def before_training(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    return state

  def due(self, step: int) -> bool:
    """Whether `before_step` runs before step `step`."""
    return False

  def before_step(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    return state

  def for_target(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    return state


def hooks_for(program, domains: dict[str, data_lib.Domain], mesh: Mesh,
              process: dict[str, int]) -> list[Hook]:
  """The hooks `program`'s method, regularizer and model settings declare."""
  config = program.config
  hooks: list[Hook] = []
  if program.regularizer.needs_fisher:
    hooks.append(FisherEstimate(program, domains['source'], mesh, process))
  if program.method.needs_centroids:
    hooks.append(TargetClustering(program, domains['target'], mesh, process))
  if config.model.batch_norm == 'adabn':
    hooks.append(AdaBN(program, domains['target'], mesh, process))
  return hooks


def _set_anchor(program, name: str) -> Any:
  return jax.jit(lambda state, value: state.replace(anchors={**state.anchors, name: value}),
                 out_shardings=program.state_sharding, donate_argnums=(0,))


class FisherEstimate(Hook):
  """The diagonal Fisher at theta_S from `fisher_batches` source batches, scaled to mean 1 over
  the transferred parameters so that Fisher-SP's alpha is on L2-SP's scale."""

  def __init__(self, program, source: data_lib.Domain, mesh: Mesh, process: dict[str, int]):
    self.program, self.source, self.mesh, self.process = program, source, mesh, process
    model = program.model

    def fisher_step(state: TrainState, batch: dict[str, Any]) -> Any:
      """Sum over a labelled batch of squared per-example gradients of the log-likelihood at the
      reference parameters (the empirical diagonal Fisher information, EWC-style)."""
      def example_loss(params, inputs, label):
        variables = {'params': params, **state.model_state}
        logits = model.apply(variables, inputs[None], train=False)['logits']
        return losses.cross_entropy(logits, label[None])

      grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(
          state.anchors['params'], batch['input'], batch['label'])
      return jax.tree.map(lambda g: jnp.sum(jnp.square(g), axis=0), grads)

    replicated = parallel.replicated(mesh)
    self.fisher_step = jax.jit(fisher_step,
                               in_shardings=(program.state_sharding, program.batch_sharding),
                               out_shardings=replicated)
    self.set_fisher = _set_anchor(program, 'fisher')

  def before_training(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    source = self.source
    iterator = data_lib.train_iterator(source.splits['train'], source.batch_fn, config.batch_size,
                                       config.seed, stream=stream_seed('fisher'), **self.process)
    total, count = None, 0
    for _ in range(config.regularizer.fisher_batches):
      sums = self.fisher_step(state, parallel.to_global(next(iterator), self.mesh))
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
      count += config.batch_size
    fisher = jax.tree.map(lambda x: x / count, total)
    pretrained = self.program.pretrained
    mask = pretrained.loaded_mask(fisher) if pretrained else None
    leaves = [f for f, m in zip(jax.tree.leaves(fisher), jax.tree.leaves(mask) if mask else
                                [True] * len(jax.tree.leaves(fisher)), strict=True) if m]
    mean = sum(jnp.sum(f) for f in leaves) / sum(f.size for f in leaves)
    fisher = jax.tree.map(lambda f: f / jnp.maximum(mean, 1e-12), fisher)
    logging.info('estimated the diagonal Fisher on %d source examples (mean before scaling %.3g)',
                 count, float(mean))
    return self.set_fisher(state, fisher)


class TargetClustering(Hook):
  """SHOT's clustering of all target training data every `method.shot_refresh_every` steps
  (default: once an epoch of the target), from step 0: centroids weighted by the predictions,
  then one hard k-means step; classes left without examples get a zero row (never assigned)."""

  def __init__(self, program, target: data_lib.Domain, mesh: Mesh, process: dict[str, int]):
    self.target, self.mesh, self.process = target, mesh, process
    config, model = program.config, program.model
    train_size = len(target.splits['train'])
    self.every = config.method.shot_refresh_every or -(-train_size // config.batch_size)
    num_classes = program.abstract_state.anchors['centroids'].shape[0]

    def centroid_step(state: TrainState, batch: dict[str, Any], centroids: Any) -> dict:
      """Per-class sums of SHOT's clustering features over the real rows of a batch, weighted
      by the softmax predictions (`centroids` None) or by the nearest of `centroids`."""
      variables = {'params': state.params, **state.model_state}
      outputs = model.apply(variables, batch['input'], train=False)
      if centroids is None:
        weights = jax.nn.softmax(outputs['logits'])
      else:
        weights = jax.nn.one_hot(nearest_centroid(outputs['features'], centroids), num_classes)
      weights = weights * batch['mask'].astype(jnp.float32)[:, None]
      return {'sums': weights.T @ shot_features(outputs['features']),
              'counts': jnp.sum(weights, axis=0)}

    replicated = parallel.replicated(mesh)
    self.centroid_step = jax.jit(
        centroid_step, in_shardings=(program.state_sharding, program.batch_sharding, replicated),
        out_shardings=replicated)
    self.set_centroids = _set_anchor(program, 'centroids')

  def due(self, step: int) -> bool:
    return step % self.every == 0

  def before_step(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    target, centroids = self.target, None
    for _ in range(2):
      totals = None
      for batch in data_lib.eval_batches(target.splits['train'], target.unlabeled_fn,
                                         config.eval_batch_size, **self.process):
        sums = self.centroid_step(state, parallel.to_global(batch, self.mesh), centroids)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
      centroids = totals['sums'] / jnp.maximum(totals['counts'], 1e-8)[:, None]
      centroids = jnp.where(totals['counts'][:, None] > 0, centroids, 0.0)
    return self.set_centroids(state, centroids)


class AdaBN(Hook):
  """AdaBN (Li et al. 2016, arXiv:1603.04779): the target is evaluated with a copy of the state
  whose BatchNorm statistics are re-estimated on unlabelled target training batches (reset, then
  `adabn_batches` updates with the layers' momentum, so the start decays to 0.9^n). Training
  keeps its own statistics."""

  def __init__(self, program, target: data_lib.Domain, mesh: Mesh, process: dict[str, int]):
    self.target, self.mesh, self.process = target, mesh, process
    model = program.model

    def reset_batch_stats(state: TrainState) -> TrainState:
      def reset(path, leaf):
        return jnp.ones_like(leaf) if str(path[-1].key) == 'var' else jnp.zeros_like(leaf)
      stats = jax.tree_util.tree_map_with_path(reset, state.model_state['batch_stats'])
      return state.replace(model_state={**state.model_state, 'batch_stats': stats})

    def adabn_step(state: TrainState, batch: dict[str, Any]) -> TrainState:
      """A forward pass in training mode: BatchNorm moves its statistics towards the batch's."""
      variables = {'params': state.params, **state.model_state}
      _, updated = model.apply(variables, batch['input'], train=True, mutable=['batch_stats'],
                               rngs={'dropout': jax.random.key(0)})
      return state.replace(model_state={**state.model_state, **updated})

    self.reset = jax.jit(reset_batch_stats, out_shardings=program.state_sharding)
    self.step = jax.jit(adabn_step, in_shardings=(program.state_sharding, program.batch_sharding),
                        out_shardings=program.state_sharding)

  def for_target(self, state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    target = self.target
    iterator = data_lib.train_iterator(target.splits['train'], target.unlabeled_fn,
                                       config.batch_size, config.seed,
                                       stream=stream_seed('adabn'), **self.process)
    adapted = self.reset(state)
    for _ in range(config.model.adabn_batches):
      adapted = self.step(adapted, parallel.to_global(next(iterator), self.mesh))
    return adapted
