"""Evaluation: user splits, probes on frozen vectors, metrics, baselines and reports."""
