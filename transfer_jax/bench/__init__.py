"""Benchmarks that print figures: `python -m transfer_jax.bench.NAME --help`."""
