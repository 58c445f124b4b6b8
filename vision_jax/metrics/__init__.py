"""vision_jax.metrics."""
