"""Checkpoints of a run: ``ckpt-<step>`` files, resume, start afresh, warm start.

``tf.train.CheckpointManager`` writes each checkpoint under temporary names and
updates its ``checkpoint`` index last, so a run killed at any moment (even by
SIGKILL) resumes from its last complete checkpoint.
"""

import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from contracts.run_folder import CHECKPOINT_NAME, checkpoint_steps
from util.distribution import is_chief, worker_role
from util.errors import UserInputError
from util.run_config import read_run_config

# Layer object graphs are shallow; the bound keeps shared objects from being walked forever.
_MAX_OBJECT_DEPTH = 12


def prepare_checkpoint_dir(checkpoint_dir, run_config, overwrite, architecture_changes):
    """Makes ``checkpoint_dir`` ready: emptied with ``overwrite``, else checked for resuming.

    ``architecture_changes(previous, current)`` lists the architecture keys
    whose values differ (``model.registry.architecture_changes``).

    Raises:
        UserInputError: the folder holds a run whose architecture flags differ
            from ``run_config`` (resuming it would fail or silently mix models).
    """
    if overwrite and os.path.exists(checkpoint_dir) and is_chief():
        shutil.rmtree(checkpoint_dir)
    os.makedirs(checkpoint_dir, exist_ok=True)
    previous = read_run_config(checkpoint_dir)
    if previous is None or not checkpoint_steps(checkpoint_dir):
        return
    changes = architecture_changes(previous, run_config)
    if changes:
        listed = "; ".join(f"--{key} was {old}, now {new}" for key, old, new in changes)
        raise UserInputError(
            f"--checkpoint_dir {checkpoint_dir} holds a run with another architecture ({listed}); "
            f"pass --overwrite to start afresh there, or choose another --checkpoint_dir")


class RunCheckpoints:
    """Saves and restores the model, the optimizer and the step of one run.

    Under MultiWorkerMirroredStrategy every worker must take part in a save;
    only the chief writes into ``checkpoint_dir``, the others into a private
    temporary folder that is deleted afterwards.
    """

    def __init__(self, checkpoint_dir, model, optimizer, step, keep):
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
        self._chief = is_chief()
        if self._chief:
            directory = checkpoint_dir
        else:
            task_type, task_id, _ = worker_role()
            directory = tempfile.mkdtemp(prefix=f"ckpt-{task_type}-{task_id}-")
        self._directory = directory
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=keep, checkpoint_name=CHECKPOINT_NAME)

    def restore_latest(self):
        """Restores the latest checkpoint of the run folder; returns its path or None."""
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest is None:
            return None
        try:
            # Strict: every variable of the model and optimizer must come back.
            self.checkpoint.restore(latest).assert_consumed()
        except AssertionError as error:
            raise UserInputError(
                f"checkpoint {latest} does not match this model ({str(error).splitlines()[0]}); "
                f"pass --overwrite to start afresh") from None
        return latest

    def save(self, step):
        """Writes ``ckpt-<step>`` (all workers call this)."""
        path = self.manager.save(checkpoint_number=step)
        if not self._chief:
            shutil.rmtree(self._directory, ignore_errors=True)
        return path


def resolve_checkpoint(path, flag):
    """A checkpoint prefix from a prefix or a run folder (its latest)."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise UserInputError(f"{flag}: folder {path} holds no checkpoint")
        return latest
    if not os.path.exists(path + ".index"):
        raise UserInputError(f"{flag}: no checkpoint {path} (expected {path}.index)")
    return path


def warm_start(model_parts, init_checkpoint):
    """Restores the named parts of a model from another run's checkpoint.

    SUMN's rule: the encoder (word embeddings, behaviour layer, pooling) is
    warm-started; the decoder, whose output layer depends on the vocabulary,
    is not. Variables whose shapes differ are skipped and reported.

    Args:
        model_parts: dict of attribute name -> layer, e.g.
            {"behaviour_encoder": ..., "pooling": ...}.
        init_checkpoint: a checkpoint prefix or a run folder.

    Returns:
        (restored, skipped): lists of variable paths.
    """
    prefix = resolve_checkpoint(init_checkpoint, "--init_checkpoint")
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    keys = _checkpoint_keys_by_object_path(reader)
    restored, skipped = [], []
    for part_name, layer in model_parts.items():
        for variable in layer.weights:
            key = _checkpoint_key(part_name, layer, variable, keys)
            if key is None:
                skipped.append(f"{variable.path} (absent)")
                continue
            if tuple(shapes[key]) != tuple(variable.shape):
                skipped.append(f"{variable.path} (shape {tuple(shapes[key])} "
                               f"!= {tuple(variable.shape)})")
                continue
            variable.assign(reader.get_tensor(key))
            restored.append(variable.path)
    return restored, skipped


def _checkpoint_keys_by_object_path(reader):
    """Maps every object path in a checkpoint ("model/pooling/key_norm/gamma") to its value key.

    An object-based checkpoint stores each variable once, under whichever path
    reached it first (often through the optimizer's variable list), so the
    value key cannot be derived from the model path; the saved object graph
    links every path to it.
    """
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    value_keys = {}
    for node_id, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE":
                value_keys[node_id] = attribute.checkpoint_key
    paths = {}
    pending = [(0, "", 0)]
    while pending:
        node_id, path, depth = pending.pop()
        if node_id in value_keys:
            paths[path] = value_keys[node_id]
        if depth >= _MAX_OBJECT_DEPTH:
            continue
        for child in graph.nodes[node_id].children:
            child_path = f"{path}/{child.local_name}" if path else child.local_name
            pending.append((child.node_id, child_path, depth + 1))
    return paths


def _checkpoint_key(part_name, layer, variable, keys):
    """The value key of ``model.<part_name>``'s ``variable`` in a checkpoint, or None.

    Keras 3 layers are tracked by attribute name, so a variable's path below
    its part ("key_projection/kernel") names its object path, except that
    some Keras layers keep a weight under a private attribute ("_kernel").
    """
    relative = variable.path.split(layer.name + "/", 1)[-1]
    folder, _, name = relative.rpartition("/")
    prefix = f"model/{part_name}/" + (folder + "/" if folder else "")
    for candidate in (name, "_" + name):
        if prefix + candidate in keys:
            return keys[prefix + candidate]
    return None
