"""Is a checkpoint whole, and are a model's numbers finite: the checks before a save and after a failed read.

Training, fine-tuning and inference share them (``model/training``,
``model/inference``), so they live beside the registry rather than in any
one stage. A damaged checkpoint is told apart from a model that does not
match it by reading every tensor back: TensorFlow verifies each tensor's
checksum, and a truncated data file or index cannot be read at all.
"""

import contextlib
import gc
import logging

import tensorflow as tf

from contracts.run_folder import checkpoint_files

# What TensorFlow raises for a truncated or corrupted checkpoint file (IndexError:
# "Read less bytes than requested" from a short data file).
READ_ERRORS = (tf.errors.OpError, IndexError, ValueError)


@contextlib.contextmanager
def tensorflow_warnings_silenced():
    """TensorFlow's own warnings held back while a checkpoint is read; the caller reports in one line.

    TensorFlow logs a warning for an unparsable state file and then ignores it,
    and a failed restore leaves a restore coordinator that lists every
    unmatched checkpoint value when it is garbage collected (hence the collect).
    """
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        gc.collect()
        logger.setLevel(level)


def _first_line(error):
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def damage(prefix):
    """Why the checkpoint ``prefix`` cannot be read, naming the file, or None when it reads whole.

    Reads every tensor, so call it when a restore has failed (or before
    trusting a checkpoint), not on every restore.
    """
    index, *data = checkpoint_files(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except READ_ERRORS as error:
        return f"its index file {index} is damaged ({_first_line(error)})"
    try:
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except READ_ERRORS as error:
        files = " / ".join(data) or f"{prefix}.data-*"
        missing = "" if data else " (missing)"
        return f"its data file {files}{missing} is damaged ({_first_line(error)})"
    return None


def non_finite_variables(variables):
    """Paths of the floating-point ``variables`` holding a nan or an infinity."""
    bad = []
    for variable in variables:
        if not tf.as_dtype(variable.dtype).is_floating:  # Keras variables name their dtype as text
            continue
        if not bool(tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(variable)))):
            bad.append(getattr(variable, "path", None) or variable.name)
    return bad
