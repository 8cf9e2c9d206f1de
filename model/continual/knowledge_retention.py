"""TERACON's knowledge retention: the old tasks' outputs on the new task's users stay the teacher's.

While task t trains, a frozen copy of the model from before it (the
teacher) labels the new task's own inputs for every old task i: its head-i
outputs are the pseudo-labels, and the model being trained (the student,
run as task i with head i) is pulled towards them (``../shared/SYSTEMS.md``,
TERACON):

    L_retain = sum_i w_i MSE(student_i(x_i), teacher_i(x_i))

x_i is a random share r_i of the batch, r_i = 1 - mean over masked layers
of sigmoid(6 cos(m_i, m_t)), where m_i is the teacher's mask of task i and
m_t the student's mask of the new task, both at the step's annealed scale:
the less alike two tasks' masks, the more of the batch guards the old one.
w_i = r_i / sum_j r_j.

Masks are sigmoids, so they are alike in direction: on ML-1M r_i is 0.0025
(sigmoid(6) is 0.9975) for most of each epoch's anneal and 0.04-0.07 at
s_max, one user of a 128-user batch, and T1 is forgotten. ``min_share``
(``--retention_min_share``, 0.25 by default; 0 is the paper's rule) raises
every old task's share to at least that much of the batch; the weights w_i
are unchanged.

Two differences from the official code, both stated in the issue's note:

* r_i is computed from the step's own masks (the original uses the masks of
  the previous batch, and 0.9 at the first); the masks depend on no input,
  so the two differ by one optimizer step.
* Bounded pseudo-labels: a head over items (T1's next-item softmax, the
  item-recommendation head) is matched on the teacher's ``top_k``
  best-scored items per user, not on every item's logit ([batch, k] rather
  than [batch, items] per old task); ``top_k=0`` matches every output, as
  the original does. Classification heads always match every class.

One option beyond the paper: ``positions="all"`` (``--retention_positions``)
matches T1's next-item head at every position of the history, as T1 was
trained, instead of at the newest one only; other heads read one position
either way. Its MSE averages over the real (unpadded) positions.
"""

import dataclasses

import tensorflow as tf

from model.layers.task_embedding_mask_adapter import mask_adapters, running_as

# TERACON's sharpness of the mask similarity (sigmoid(6 cos)).
SIMILARITY_SHARPNESS = 6.0
# Where a head with outputs at every position (T1's) is matched: at the newest item, or at every one.
RETENTION_POSITIONS = ("newest", "all")


@dataclasses.dataclass
class OldTask:
    """What retention needs of one earlier task.

    Attributes:
        index: its 1-based place in the folder.
        kind: its ``Task`` class (which reads a head's outputs: ``head_outputs``).
        student_head: its head in the model being trained (trainable).
        teacher_head: a frozen copy of that head from before the new task.
    """

    index: int
    kind: type
    student_head: object
    teacher_head: object


def layer_masks(encoder, task, scale):
    """[masked layers, channels]: task ``task``'s masks of every block of ``encoder``, at ``scale``."""
    return tf.concat([adapter.task_masks(task, scale) for adapter in mask_adapters(encoder)],
                     axis=0)


def sampling_ratio(old_masks, new_masks):
    """r = 1 - mean over layers of sigmoid(6 cos(old, new)); [layers, C] each -> scalar in (0, 1)."""
    old = tf.math.l2_normalize(old_masks, axis=-1, epsilon=1e-12)
    new = tf.math.l2_normalize(new_masks, axis=-1, epsilon=1e-12)
    cosine = tf.reduce_sum(old * new, axis=-1)
    return 1.0 - tf.reduce_mean(tf.sigmoid(SIMILARITY_SHARPNESS * cosine))


def retained_users(users, ratio, min_share=0.0):
    """int32 scalar: how many of a batch's ``users`` guard one old task, max(r, min_share) of them, at least 1."""
    share = tf.maximum(tf.cast(ratio, tf.float32), float(min_share))
    return tf.maximum(1, tf.cast(tf.cast(users, tf.float32) * share, tf.int32))


def matched_outputs(student, teacher, top_k):
    """(student, teacher) [..., k] outputs to compare: the teacher's top ``top_k`` of the last axis, or all.

    Args:
        student, teacher: float32 [batch, outputs] or [batch, positions, outputs].
    """
    if top_k <= 0 or teacher.shape[-1] is None or teacher.shape[-1] <= top_k:
        return student, teacher
    best = tf.math.top_k(teacher, k=top_k).indices
    leading = len(teacher.shape) - 1
    return (tf.gather(student, best, batch_dims=leading), tf.gather(teacher, best, batch_dims=leading))


def mean_squared_difference(outputs, targets, real=None):
    """The MSE of [batch, (positions,) k] outputs, over the ``real`` bool [batch, positions] positions if given.

    An empty share (a replica's part of a short batch) gives 0, not NaN.
    """
    squared = tf.square(outputs - targets)
    if real is None:
        return tf.math.divide_no_nan(tf.reduce_sum(squared), tf.cast(tf.size(squared), tf.float32))
    weights = tf.cast(real, tf.float32)[..., None]
    count = tf.reduce_sum(weights) * tf.cast(tf.shape(squared)[-1], tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(squared * weights), count)


class KnowledgeRetention:
    """The retention term of one new task over its earlier tasks.

    Args:
        student: the ``TaskModel`` being trained (task ``new_task``).
        teacher: a frozen ``TaskModel`` of the folder before the new task.
        old_tasks: [OldTask], the earlier tasks.
        new_task: the new task's 1-based index.
        top_k: item heads are matched on the teacher's top ``top_k`` items; 0: on all.
        min_share: the least share of the batch each old task is retained on.
        positions: ``"newest"`` or ``"all"``: where a head with outputs at
            every position (T1's next-item head) is matched.
    """

    def __init__(self, student, teacher, old_tasks, new_task, top_k, min_share=0.0, positions="newest"):
        if positions not in RETENTION_POSITIONS:
            raise ValueError(f"positions must be one of {RETENTION_POSITIONS}, got {positions!r}")
        self.student = student
        self.teacher = teacher
        self.old_tasks = list(old_tasks)
        self.new_task = int(new_task)
        self.top_k = int(top_k)
        self.min_share = float(min_share)
        self.positions = positions

    def _outputs(self, model, old, head, subset, training):
        """(outputs, real positions or None) of ``head`` on ``subset`` as this retention matches them."""
        if self.positions == "all" and hasattr(old.kind, "head_outputs_at_every_position"):
            return old.kind.head_outputs_at_every_position(model, head, subset, training=training)
        return old.kind.head_outputs(model, head, subset, training=training), None

    def loss(self, items, scale):
        """The scalar retention loss of one replica's batch.

        Args:
            items: tf.RaggedTensor [batch, (length)], the new task's histories.
            scale: the step's mask scale s.

        Returns:
            (loss, ratios): the weighted MSE, and r_i per old task [num_old].
        """
        new_masks = tf.stop_gradient(layer_masks(self.student.encoder, self.new_task, scale))
        ratios = tf.stack([
            sampling_ratio(tf.stop_gradient(layer_masks(self.teacher.encoder, old.index, scale)),
                           new_masks)
            for old in self.old_tasks])
        weights = ratios / tf.reduce_sum(ratios)
        users = items.nrows(out_type=tf.int32)
        total = tf.constant(0.0)
        for position, old in enumerate(self.old_tasks):
            count = retained_users(users, ratios[position], self.min_share)
            chosen = tf.random.shuffle(tf.range(users))[:count]
            subset = tf.gather(items, chosen)
            with running_as(self.teacher.encoder, old.index, scale):
                targets, real = self._outputs(self.teacher, old, old.teacher_head, subset, False)
                targets = tf.stop_gradient(targets)
            with running_as(self.student.encoder, old.index, scale):
                outputs, _ = self._outputs(self.student, old, old.student_head, subset, True)
            outputs, targets = matched_outputs(outputs, targets, self.top_k)
            total = total + weights[position] * mean_squared_difference(outputs, targets, real)
        return total, ratios
