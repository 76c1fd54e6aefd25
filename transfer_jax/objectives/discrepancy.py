"""Statistics that the alignment methods are built from: kernels, MMD estimators, CORAL, entropy.

Pure functions of arrays; shapes in suffixes (`x_NxD`: N rows of D features). Means are over the
global batch, so the values are the same on 1 or many devices.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from transfer_jax.errors import UserError


def entropy(probs_BxC: jnp.ndarray) -> jnp.ndarray:
  """Shannon entropy (nats) of each row of a probability matrix, shape (B,)."""
  return -jnp.sum(probs_BxC * jnp.log(jnp.clip(probs_BxC, 1e-12)), axis=-1)


def squared_distances(x_NxD: jnp.ndarray, y_MxD: jnp.ndarray) -> jnp.ndarray:
  """||x_i - y_j||^2 for all pairs, shape (N, M), clipped at 0 against rounding."""
  sq = (jnp.sum(x_NxD ** 2, -1)[:, None] + jnp.sum(y_MxD ** 2, -1)[None, :]
        - 2.0 * x_NxD @ y_MxD.T)
  return jnp.maximum(sq, 0.0)


def multi_gaussian_kernel(z_NxD: jnp.ndarray, multipliers: Sequence[float]) -> jnp.ndarray:
  """Sum of Gaussian kernels exp(-d^2 / (2 m s^2)) over the rows of `z` (source and target).

  s^2 is the mean pairwise squared distance of the batch (treated as a constant, no gradient),
  scaled by each multiplier m: the multi-kernel family of DAN (Long et al. 2015), as TLlib
  and the MK-MMD literature parameterise it.
  """
  sq = squared_distances(z_NxD, z_NxD)
  scale = jax.lax.stop_gradient(jnp.mean(sq))
  return sum(jnp.exp(-sq / (2.0 * m * scale + 1e-12)) for m in multipliers)


def mmd_from_kernel(k_NxN: jnp.ndarray, num_source: int, linear: bool = False) -> jnp.ndarray:
  """MMD^2 between the first `num_source` rows and the rest, from their joint kernel matrix.

  quadratic (`linear=False`): the biased V-statistic mean(K_ss) + mean(K_tt) - 2 mean(K_st),
    exactly 0 when the two samples are identical;
  linear (`linear=True`): Gretton et al. (2012)'s linear-time estimator over disjoint pairs,
    mean_i [k(s_2i, s_2i+1) + k(t_2i, t_2i+1) - k(s_2i, t_2i+1) - k(s_2i+1, t_2i)];
    unbiased, O(N) kernel evaluations (it reads only those entries); needs equal, even
    batch sizes.
  """
  n = k_NxN.shape[0]
  num_target = n - num_source
  if not linear:
    k_ss = k_NxN[:num_source, :num_source]
    k_tt = k_NxN[num_source:, num_source:]
    k_st = k_NxN[:num_source, num_source:]
    return jnp.mean(k_ss) + jnp.mean(k_tt) - 2.0 * jnp.mean(k_st)
  if num_source != num_target or num_source % 2:
    raise UserError(f'the linear-time MMD needs equal, even source and target batch sizes; got '
                    f'{num_source} and {num_target} (several source domains?); set '
                    'config.method.mmd_linear=False')
  s0 = jnp.arange(0, num_source, 2)
  s1, t0, t1 = s0 + 1, s0 + num_source, s0 + num_source + 1
  return jnp.mean(k_NxN[s0, s1] + k_NxN[t0, t1] - k_NxN[s0, t1] - k_NxN[s1, t0])


def coral(source_BxD: jnp.ndarray, target_BxD: jnp.ndarray) -> jnp.ndarray:
  """Deep CORAL (Sun & Saenko 2016): ||C_S - C_T||_F^2 / (4 d^2), unbiased covariances."""
  d = source_BxD.shape[-1]

  def covariance(x):
    centred = x - jnp.mean(x, axis=0, keepdims=True)
    return centred.T @ centred / (x.shape[0] - 1)

  return jnp.sum((covariance(source_BxD) - covariance(target_BxD)) ** 2) / (4.0 * d * d)


def multilinear_map(features_BxD: jnp.ndarray, probs_BxC: jnp.ndarray,
                    randomized_dim: int = 0, seed: int = 0) -> jnp.ndarray:
  """CDAN's conditioning T(f, g) (Long et al. 2018).

  randomized_dim = 0: the flattened outer product f (x) g, (B, D*C).
  randomized_dim = d > 0: (R_f f) * (R_g g) / sqrt(d) with fixed Gaussian R_f (D, d) and
  R_g (C, d) drawn from `seed` (the paper's randomized map for large D*C).
  """
  if randomized_dim <= 0:
    return (features_BxD[:, :, None] * probs_BxC[:, None, :]).reshape(features_BxD.shape[0], -1)
  key_f, key_g = jax.random.split(jax.random.key(seed))
  r_f = jax.random.normal(key_f, (features_BxD.shape[-1], randomized_dim))
  r_g = jax.random.normal(key_g, (probs_BxC.shape[-1], randomized_dim))
  return (features_BxD @ r_f) * (probs_BxC @ r_g) / jnp.sqrt(float(randomized_dim))
