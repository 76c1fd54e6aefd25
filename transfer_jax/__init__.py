"""transfer_jax: transfer learning and domain adaptation in JAX (Flax Linen, optax, orbax)."""

__version__ = '0.1.0'
