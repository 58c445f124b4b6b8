"""TF-NAS (Hu, Wu, He, ECCV 2020, arXiv:2008.05314): latency-constrained differentiable NAS with a
latency table measured on this device; see ``config.py`` for the presets and docs/tf_nas.md."""
