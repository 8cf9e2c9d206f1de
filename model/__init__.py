"""Keras 3 layers and models, one home per idea (see docs/ARCHITECTURE.md).

    registry.py   model families by name: config, builder, pretraining, user vectors
    layers/       layers several families or methods share (input checks, block adapters, patches)
    sumn/         SUMN: behaviour encoder, pooling, behavioural-consistency decoder and loss
    nextitnet/    NextItNet / GRec: dilated residual blocks (with an adapter hook), item softmax
    tasks/        downstream tasks: their data split, head, loss and metrics
    methods/      what a downstream method trains and inserts: peterrec, fineall, ...
    training/     the distributed step, loops, optimizer, checkpoints of a run
    inference/    restoring a registered family and encoding users
"""
