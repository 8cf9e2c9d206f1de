"""Picks the ``tf.distribute`` strategy a run uses, and the worker's role in it.

``auto`` reads the machine the way SUMN's ``set_dist_env`` read its cluster:
``TF_CONFIG`` with several workers means MultiWorkerMirroredStrategy; more
than one GPU means MirroredStrategy; otherwise the default strategy.
"""

import json
import os

import tensorflow as tf

from util.errors import UserInputError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def tf_config():
    """The parsed ``TF_CONFIG`` environment variable, or {}."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise UserInputError("the TF_CONFIG environment variable is not valid JSON") from None


def worker_role():
    """(task_type, task_id, number of workers) from TF_CONFIG; ('chief'?, 0, 1) alone."""
    config = tf_config()
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    return task.get("type", "worker"), int(task.get("index", 0)), max(workers, 1)


def is_chief():
    """Whether this process writes shared outputs (checkpoints, logs) of the run."""
    task_type, task_id, workers = worker_role()
    if workers == 1:
        return True
    has_chief = "chief" in tf_config().get("cluster", {})
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def split_cpu(count):
    """Makes the CPU appear as ``count`` logical devices (MirroredStrategy without GPUs).

    Must run before TensorFlow initialises its devices.
    """
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise UserInputError(
            "--cpu_replicas must be set before TensorFlow starts using the CPU") from None


def make_strategy(name="auto", cpu_replicas=0):
    """Builds the strategy named by ``--strategy``.

    Args:
        name: one of STRATEGIES.
        cpu_replicas: with ``mirrored`` and no GPU, replicate over this many
            logical CPU devices (made by ``split_cpu``).
    """
    if name not in STRATEGIES:
        raise UserInputError(f"--strategy={name} is not one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if worker_role()[2] > 1:
            name = "multi_worker"
        elif len(gpus) > 1 or cpu_replicas > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        if not tf_config():
            raise UserInputError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def describe_strategy(strategy):
    """A user-facing name: the ``--strategy`` value, not TF's internal class name."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "multi_worker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "mirrored"
    else:
        name = "default"
    return f"{name} with {strategy.num_replicas_in_sync} replica(s)"
