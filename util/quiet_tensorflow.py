"""Imports TensorFlow without its start-up noise, keeping every real warning.

On a machine without a GPU, ``import tensorflow`` and its first device probe
write lines such as ``WARNING: All log messages before absl::InitializeLog()
is called are written to STDERR``, ``Could not find cuda drivers on your
machine``, ``failed call to cuInit: ... CUDA error``, the cpu_feature_guard
notice and, on CPUs where oneDNN is turned on, its ``oneDNN custom operations
are on`` notice. They come from C++ before TensorFlow's logging is set up, so
``TF_CPP_MIN_LOG_LEVEL`` does not silence them. ``import_tensorflow`` sends
file descriptor 2 to a temporary file while TensorFlow loads and probes its
devices, then writes back every line that is not one of these known
messages: a real warning still reaches the user, in order.

The CUDA lines are dropped only where no GPU is there to find (no
``/dev/nvidia<N>``, or ``CUDA_VISIBLE_DEVICES`` empty or -1); on a GPU
machine they mean something is wrong, and stay.
"""

import contextlib
import glob
import os
import re
import sys
import tempfile

# TensorFlow's C++ INFO lines (oneDNN notices and the like) stay hidden, as
# every entry point has always had it; WARNING and ERROR lines still show.
_DEFAULT_LOG_LEVEL = "2"

_ALWAYS_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cpu_feature_guard\.cc"
    r"|oneDNN custom operations are on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags")
_NO_GPU_NOISE = re.compile(
    r"cudart_stub\.cc|Could not find cuda drivers on your machine"
    r"|failed call to cuInit|cuda_platform\.cc|cuda_executor\.cc|cuda_diagnostics\.cc"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc"
    r"|TF-TRT Warning: Could not find TensorRT")


def no_gpu_to_find():
    """True where TensorFlow cannot find a GPU: none is hidden from it, or none is installed."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return True
    return not glob.glob("/dev/nvidia[0-9]*")


def is_noise(line, without_gpu):
    """Whether ``line`` is a start-up message that tells the user nothing."""
    return bool(_ALWAYS_NOISE.search(line) or (without_gpu and _NO_GPU_NOISE.search(line)))


@contextlib.contextmanager
def _stderr_without_noise(without_gpu):
    """Holds back what is written to file descriptor 2, then writes back all but the noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_noise(line, without_gpu))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _PerModelTracingFilter:
    """Drops TensorFlow's "frequent retracing" warning about ``inference_function``'s functions.

    ``model/tasks/user_vectors.inference_function`` traces one function per
    model, once; TensorFlow counts traces by source line, so a job that
    builds several models (a continual task's teacher, the model of every
    task it scores) reads as one function retraced again and again. Other
    functions' retracing warnings still show.
    """

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "inference_function.<locals>" in message)


def import_tensorflow():
    """``import tensorflow`` (and its device probe) with the noise held back; returns the module."""
    if "tensorflow" in sys.modules:
        return _with_tracing_filter(sys.modules["tensorflow"])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _DEFAULT_LOG_LEVEL)
    without_gpu = no_gpu_to_find()
    with _stderr_without_noise(without_gpu):
        import tensorflow as tf

        # The first device probe (cuInit) otherwise happens at the first op,
        # outside this block; listing physical devices still lets the entry
        # point split the CPU into logical devices afterwards.
        tf.config.list_physical_devices("GPU")
    return _with_tracing_filter(tf)


def _with_tracing_filter(tf):
    """``tf``, its logger filtering ``_PerModelTracingFilter``'s warnings (added once)."""
    logger = tf.get_logger()
    if not any(isinstance(f, _PerModelTracingFilter) for f in logger.filters):
        logger.addFilter(_PerModelTracingFilter())
    return tf
