"""vision_jax.linalg."""
