"""HAMBox face detection: online high-quality anchor mining vs standard matching."""
