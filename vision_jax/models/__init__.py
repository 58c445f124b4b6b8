"""vision_jax.models."""
