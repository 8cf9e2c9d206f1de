"""Batch inference: restoring a trained model from ``ckpt-<step>`` and encoding users with it.

``restore`` picks the checkpoint (``--step``) and the hop (``--hop``) and
restores the model alone (not the optimizer), building it through its
family's registration (``model/registry.py``); ``batch_inference`` plans which
table shards this process encodes (``--slice_id``/``--slice_count`` or
``TF_CONFIG``), encodes them batch by batch and hands the vectors to a writer
from ``data_dumper.user_vector_writer``, one output shard per input shard.
"""
