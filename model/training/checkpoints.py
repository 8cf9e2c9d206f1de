"""Checkpoints of a run: ``ckpt-<step>`` files, resume, start afresh, warm start.

``tf.train.CheckpointManager`` writes each checkpoint under temporary names and
updates its ``checkpoint`` index last, so a run killed at any moment (even by
SIGKILL) resumes from its last complete checkpoint.
"""

import os
import shutil
import sys
import tempfile

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from contracts.run_folder import (
    CHECKPOINT_NAME,
    CHECKPOINT_STATE_FILE,
    TRAINING_RUN,
    checkpoint_path,
    checkpoint_steps,
    unfinished_checkpoint_folders,
)
from model.checkpoint_integrity import (
    READ_ERRORS,
    damage,
    non_finite_variables,
    tensorflow_warnings_silenced,
)
from util.distribution import is_chief, worker_role
from util.errors import UserInputError
from util.output_folder import remove_for_overwrite
from util.run_config import read_run_config


def _note(line):
    print(f"note: {line}", file=sys.stderr, flush=True)


def recorded_step(checkpoint_dir):
    """The step the ``checkpoint`` state file names as the latest: (step or None, problem or None).

    ``problem`` says why a state file that exists cannot be used (unparsable,
    or naming a checkpoint that is gone).
    """
    state_file = os.path.join(checkpoint_dir, CHECKPOINT_STATE_FILE)
    if not os.path.exists(state_file):
        return None, None
    with tensorflow_warnings_silenced():
        try:
            state = tf.train.get_checkpoint_state(checkpoint_dir)
        except (tf.errors.OpError, ValueError) as error:
            return None, f"it cannot be read ({str(error).splitlines()[0][:120]})"
    if state is None or not state.model_checkpoint_path:
        return None, "it is not a checkpoint state file TensorFlow can parse"
    name = os.path.basename(state.model_checkpoint_path)
    prefix = f"{CHECKPOINT_NAME}-"
    if not name.startswith(prefix) or not name[len(prefix):].isdigit():
        return None, f"it names {name}, which is not a {CHECKPOINT_NAME}-<step> of this run"
    step = int(name[len(prefix):])
    if step not in checkpoint_steps(checkpoint_dir):
        return None, f"it names {name}, whose .index file is missing"
    return step, None

# Layer object graphs are shallow; the bound keeps shared objects from being walked forever.
_MAX_OBJECT_DEPTH = 12


def prepare_checkpoint_dir(checkpoint_dir, run_config, overwrite, architecture_changes):
    """Makes ``checkpoint_dir`` ready: emptied with ``overwrite``, else checked for resuming.

    ``architecture_changes(previous, current)`` lists the architecture keys
    whose values differ (``model.registry.architecture_changes``). Folders
    ``ckpt-<step>_temp`` that a save killed midway left behind are removed.

    Raises:
        UserInputError: ``overwrite`` and the folder holds anything main/train.py
            did not write (``contracts.run_folder.TRAINING_RUN``), or the folder
            holds a run whose architecture flags differ from ``run_config``
            (resuming it would fail or silently mix models).
    """
    if is_chief():
        if overwrite:
            remove_for_overwrite(checkpoint_dir, TRAINING_RUN, "--checkpoint_dir")
        for unfinished in unfinished_checkpoint_folders(checkpoint_dir):
            shutil.rmtree(unfinished)
            _note(f"removed {unfinished}, left by a checkpoint save that was killed")
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
        self._variables = list(model.weights) + list(optimizer.variables)
        self._chief = is_chief()
        if self._chief:
            directory = checkpoint_dir
        else:
            task_type, task_id, _ = worker_role()
            directory = tempfile.mkdtemp(prefix=f"ckpt-{task_type}-{task_id}-")
        self._directory = directory
        with tensorflow_warnings_silenced():  # restore_latest reports a damaged state file
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, directory, max_to_keep=keep, checkpoint_name=CHECKPOINT_NAME)

    def restore_latest(self, log=_note):
        """Restores the newest checkpoint of the run folder that reads back whole; returns its path or None.

        The ``checkpoint`` state file names the latest checkpoint; where it is
        damaged, the ``ckpt-<step>.index`` files are listed instead. A
        checkpoint whose files are damaged (a truncated data file) is skipped
        for the one before it, and ``log`` says so.

        Raises:
            UserInputError: the newest readable checkpoint does not match the
                model (another architecture), or checkpoints exist but none reads.
        """
        steps = checkpoint_steps(self.checkpoint_dir)
        latest, problem = recorded_step(self.checkpoint_dir)
        if problem:
            log(f"the checkpoint state file {os.path.join(self.checkpoint_dir, CHECKPOINT_STATE_FILE)} "
                f"is unusable ({problem}); looking for {CHECKPOINT_NAME}-<step>.index files instead")
        if latest is None:
            latest = steps[-1] if steps else None
        if latest is None:
            return None
        # Checkpoints after the recorded one were written by a save killed before it
        # updated the state file; the recorded one is where training stood.
        candidates = [step for step in reversed(steps) if step <= latest]
        skipped = []
        for step in candidates:
            prefix = checkpoint_path(self.checkpoint_dir, step)
            try:
                # Strict: every variable of the model and optimizer must come back.
                self.checkpoint.restore(prefix).assert_consumed()
            except (AssertionError, *READ_ERRORS) as error:
                why = damage(prefix)
                if why is None:
                    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                    raise UserInputError(
                        f"checkpoint {prefix} does not match this model ({first_line[:200]}); "
                        f"pass --overwrite to start afresh") from None
                log(f"checkpoint {prefix} cannot be restored: {why}")
                skipped.append(step)
                continue
            if skipped:
                log(f"resuming from {prefix}, the newest checkpoint that restores "
                    f"(skipped damaged {', '.join(f'{CHECKPOINT_NAME}-{s}' for s in skipped)})")
            return prefix
        raise UserInputError(
            f"--checkpoint_dir {self.checkpoint_dir}: none of its checkpoints can be restored "
            f"({', '.join(f'{CHECKPOINT_NAME}-{s}' for s in skipped)} are damaged); pass "
            f"--overwrite to start afresh")

    def non_finite_variables(self):
        """Paths of the model's and the optimizer's variables holding a nan or an infinity."""
        return non_finite_variables(self._variables)

    def save(self, step):
        """Writes ``ckpt-<step>`` (all workers call this)."""
        path = self.manager.save(checkpoint_number=step)
        if not self._chief:
            shutil.rmtree(self._directory, ignore_errors=True)
        return path


def resolve_checkpoint(path, flag):
    """A checkpoint prefix from a prefix or a run folder (its latest)."""
    if os.path.isdir(path):
        # The state file's latest, else the newest .index file (a damaged state file).
        latest, _ = recorded_step(path)
        steps = checkpoint_steps(path)
        if latest is None and not steps:
            raise UserInputError(f"{flag}: folder {path} holds no checkpoint")
        return checkpoint_path(path, latest if latest is not None else steps[-1])
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
    why = damage(prefix)
    if why:
        raise UserInputError(f"--init_checkpoint: checkpoint {prefix} cannot be read: {why}")
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
