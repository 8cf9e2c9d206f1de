"""Progress lines on stdout and TensorBoard scalars for a training run."""

import datetime
import os
import time

import tensorflow as tf

from util.distribution import is_chief

# A long run says how it is doing at least this often, whatever --log_every is.
DEFAULT_PROGRESS_SECONDS = 30.0


def format_eta(seconds):
    """``h:mm:ss`` of a non-negative number of seconds; "?" while unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    return str(datetime.timedelta(seconds=int(round(max(seconds, 0.0)))))


class TrainingLog:
    """Writes step metrics every ``log_every`` steps, and at least every ``progress_seconds``.

    TensorBoard event files go to ``<checkpoint_dir>/train`` (only the chief
    writes). Scalars: loss, loss per hop, learning rate, examples/s, gradient
    norm, and every metric whose name holds a "/" (a trainer's own groups,
    such as SUPERMOE's ``task_loss/<task>`` and ``router/...``). Each line also gives steps/s since the run (re)started and the time
    left to ``max_steps`` at that rate.
    """

    def __init__(self, checkpoint_dir, global_batch_size, log_every, first_step, max_steps=None,
                 progress_seconds=DEFAULT_PROGRESS_SECONDS):
        self._chief = is_chief()
        self._writer = (tf.summary.create_file_writer(os.path.join(checkpoint_dir, "train"))
                        if self._chief else tf.summary.create_noop_writer())
        self._batch = global_batch_size
        self._every = log_every
        self._max_steps = max_steps
        self._progress_seconds = progress_seconds
        self._first_step = self._mark_step = first_step
        self._started = self._mark_time = time.perf_counter()

    def due(self, step):
        """Whether ``step`` gets a line: every ``log_every`` steps, or ``progress_seconds`` since the last."""
        return (step % self._every == 0
                or time.perf_counter() - self._mark_time >= self._progress_seconds)

    def write(self, step, metrics, learning_rate):
        """Prints one progress line and writes scalars; returns examples/s since the last call."""
        now = time.perf_counter()
        steps = max(step - self._mark_step, 1)
        examples_per_second = steps * self._batch / max(now - self._mark_time, 1e-9)
        self._mark_step, self._mark_time = step, now
        steps_per_second = (step - self._first_step) / max(now - self._started, 1e-9)
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
            # A trainer's own scalars are named by group ("task_loss/gender", "router/z_loss").
            for name, value in metrics.items():
                if "/" in name:
                    tf.summary.scalar(name, float(value))
        self._writer.flush()
        if self._chief:
            eta = ""
            if self._max_steps:
                left = (self._max_steps - step) / steps_per_second if steps_per_second > 0 else None
                eta = f"  ETA {format_eta(left)} to step {self._max_steps:,}"
            print(f"step {step}  loss {loss:.4f}  grad_norm {gradient_norm:.3f}  "
                  f"{examples_per_second:,.0f} examples/s  {steps_per_second:,.2f} steps/s{eta}",
                  flush=True)
        return examples_per_second

    def close(self):
        self._writer.close()
