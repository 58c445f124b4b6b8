"""LR-PEA synthetic study (``python -m experiments.lrpea``); see config.py for the presets."""
