"""vision_jax.data."""
