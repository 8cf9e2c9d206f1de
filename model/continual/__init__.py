"""Continual learning: one model folder that learns task after task and keeps serving each (Conure)."""
