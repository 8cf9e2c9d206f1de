"""Task 1's own objective on the new task's histories: our addition to TERACON.

TERACON keeps every old task by pseudo-labels: a frozen teacher's outputs on
the new task's inputs (``knowledge_retention.py``), because an old task's
labels are gone once its data is. Task 1 of a continual folder is the
exception: it is next-item prediction, whose labels are the next items of
any history, so every batch of every later task carries them. With
``--first_task_replay_weight`` w > 0 each step of task t >= 2 adds

    w * mean over the batch's users of NextItNet's next-item loss
        (every position, run as task 1: its masks and its head)

so T1 trains on its own objective while the backbone moves for task t. This
is not in the paper or the official code (SYSTEMS.md): it is rehearsal with
labels that come free with the inputs, not with stored old data, and the
continual benchmark reports TERACON with and without it. The default weight
is 0.2 (``model/methods/teracon.py`` says what it measured); 0 is the paper.
"""

import tensorflow as tf

from model.layers.task_embedding_mask_adapter import running_as
from model.tasks.next_item import NextItemTask


class FirstTaskReplay:
    """T1's next-item loss on a batch of the new task, through T1's masks and head.

    Args:
        student: the ``TaskModel`` being trained.
        head: T1's head in it (trainable; the one retention also trains).
        num_sampled: sampled-softmax negatives, as T1 was trained; 0: full softmax.
    """

    def __init__(self, student, head, num_sampled):
        self.student = student
        self.head = head
        self.num_sampled = int(num_sampled)

    def loss(self, items, scale):
        """float32 scalar: the mean over this replica's users of T1's loss.

        Args:
            items: tf.RaggedTensor [batch, (length)], the new task's histories.
            scale: the mask scale to run task 1 at.

        An empty share (a replica's part of a short batch) gives 0, not NaN.
        """
        with running_as(self.student.encoder, 1, scale):
            losses = NextItemTask.user_losses(self.student, self.head, items, self.num_sampled)
        return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32))
