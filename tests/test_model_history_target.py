"""The history as a second decoder target (``--history_target_weight``), alone and with the others."""

import os

import numpy as np
import tensorflow as tf

from model.sumn.history_target import history_targets


def test_every_word_of_the_history_is_a_target_with_equal_weight():
    history = tf.ragged.constant([[[5, 6], [7, 0]], [[9, 9]], []], dtype=tf.int32, ragged_rank=2)
    words, weights = history_targets(history)

    assert words.numpy().tolist() == [[5, 6, 7], [9, 9, 0], [0, 0, 0]]  # padding 0 left out
    np.testing.assert_allclose(weights.numpy(), [[1 / 3] * 3, [0.5, 0.5, 0.0], [0.0] * 3])


def test_training_adds_every_weighted_term_and_logs_each(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_loader import write_parquet_table
    from test_train import train_in_process

    tables = str(tmp_path / "tables")
    write_parquet_table(tables, num_users=40, num_shards=1)
    run = tmp_path / "run"
    status, _, _ = train_in_process(capsys, f"--tables={tables}", f"--checkpoint_dir={run}",
                                    "--max_steps=3", "--history_target_weight=2",
                                    "--contrastive_weight=0.5")
    assert status == 0
    accumulator = EventAccumulator(os.path.join(run, "train"))
    accumulator.Reload()

    def values(tag):
        return np.array([float(tf.make_ndarray(event.tensor_proto))
                         for event in accumulator.Tensors(tag)])

    consistency, history, contrastive = (values(f"loss/{name}") for name in
                                         ("consistency", "history", "contrastive"))
    assert len(consistency) == 3 and min(history) > 0
    np.testing.assert_allclose(values("loss"), consistency + 2 * history + 0.5 * contrastive,
                               rtol=1e-5)
