"""vision_jax.hashing."""
