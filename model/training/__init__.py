"""Training under ``tf.distribute``: the distributed step, the loops, the optimizer, checkpoints and logs.

The loop is ours rather than ``Model.fit`` (see DESIGN.md: ``Model.fit`` under
MultiWorkerMirroredStrategy fails on TF 2.21 + Keras 3); one loop serves the
default strategy, MirroredStrategy and MultiWorkerMirroredStrategy.
"""
