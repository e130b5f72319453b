"""Benchmarks; each module runs alone (``python bench/NAME.py``) or under ``bench/run.py``."""
