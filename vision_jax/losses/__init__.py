"""vision_jax.losses."""
