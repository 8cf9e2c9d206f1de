"""Progress lines on stdout and TensorBoard scalars for a training run."""

import os
import sys
import time

import tensorflow as tf

from util.distribution import is_chief


class TrainingLog:
    """Writes step metrics every ``log_every`` steps.

    TensorBoard event files go to ``<checkpoint_dir>/train`` (only the chief
    writes). Scalars: loss, loss per hop, learning rate, examples/s, gradient norm.
    """

    def __init__(self, checkpoint_dir, global_batch_size, log_every, first_step):
        self._chief = is_chief()
        self._writer = (tf.summary.create_file_writer(os.path.join(checkpoint_dir, "train"))
                        if self._chief else tf.summary.create_noop_writer())
        self._batch = global_batch_size
        self._every = log_every
        self._mark_step = first_step
        self._mark_time = time.perf_counter()

    def due(self, step):
        return step % self._every == 0

    def write(self, step, metrics, learning_rate):
        """Prints one progress line and writes scalars; returns examples/s since the last call."""
        now = time.perf_counter()
        steps = max(step - self._mark_step, 1)
        examples_per_second = steps * self._batch / max(now - self._mark_time, 1e-9)
        self._mark_step, self._mark_time = step, now
        loss = float(metrics["loss"])
        hop_losses = [float(value) for value in metrics.get("hop_losses", ())]
        gradient_norm = float(metrics["gradient_norm"])
        with self._writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            for hop, value in enumerate(hop_losses, start=1):
                tf.summary.scalar(f"loss_per_hop/hop_{hop}", value)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("examples_per_second", examples_per_second)
            tf.summary.scalar("gradient_norm", gradient_norm)
        self._writer.flush()
        if self._chief:
            print(f"step {step}  loss {loss:.4f}  grad_norm {gradient_norm:.3f}  "
                  f"{examples_per_second:,.0f} examples/s", flush=True)
            sys.stdout.flush()
        return examples_per_second

    def close(self):
        self._writer.close()
