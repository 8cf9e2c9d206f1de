"""Helpers shared by the Keras layer tests."""

import contextlib

import keras


@contextlib.contextmanager
def global_policy(name):
    """Runs a block under the Keras mixed-precision policy ``name``, then restores the old one."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
