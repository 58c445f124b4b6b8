"""DCGN vs mean-pool vs LSTM on hierarchical event videos (embedded) or YouTube-8M (paper)."""
