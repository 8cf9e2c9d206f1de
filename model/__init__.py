"""Keras 3 layers and models: behaviour encoder, pooling strategies, objectives."""
