"""Anisotropic vector quantization (ScaNN score-aware loss) vs reconstruction-loss PQ."""
