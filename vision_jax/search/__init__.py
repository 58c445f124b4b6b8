"""vision_jax.search."""
