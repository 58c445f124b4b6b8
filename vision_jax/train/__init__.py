"""vision_jax.train."""
