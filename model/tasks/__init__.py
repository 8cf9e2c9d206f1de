"""Downstream tasks (classification of a label column, item recommendation) and their heads."""
