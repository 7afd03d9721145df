"""spot_jax: soft prompt transfer (SPoT) on a frozen T5 in JAX."""
