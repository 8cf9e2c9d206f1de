"""Run folders written by the code before the model-family registry still load and compute the same.

The fixtures (tests/fixtures/legacy_runs, see its README) were written by the
old code: a SUMN run, a NextItNet run, and PeterRec tasks with serial and
parallel model patches and a FineLast task. Loading them with today's code
must give exactly the user vectors and logits the old code computed.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from model.finetune.task_checkpoint import load_task
from model.inference.restore import restore_model
from model.sumn.model_inputs import history_to_model_inputs
from util.run_config import read_run_config

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "legacy_runs")
RECORDED_ROOT = "/tmp/legacy/out"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """A copy of the fixtures whose recorded absolute paths point at the copy."""
    root = str(tmp_path_factory.mktemp("legacy"))
    for name in os.listdir(FIXTURES):
        source = os.path.join(FIXTURES, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(root, name))
    for folder, _, files in os.walk(root):
        for file_name in files:
            if file_name.endswith(".json"):
                path = os.path.join(folder, file_name)
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text.replace(RECORDED_ROOT, root))
    expected = dict(np.load(os.path.join(FIXTURES, "expected_outputs.npz")))
    return root, expected


# The same weights and inputs give the recorded outputs up to float32 rounding: on CPUs where
# TensorFlow turns on oneDNN the same sums run in another order (seen: 4.8e-7 apart, 4e-6 relative).
# A wrongly restored weight moves outputs by far more than this.
SAME_FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}


def test_a_sumn_run_of_the_old_code_encodes_users_as_it_did(legacy):
    root, expected = legacy
    run = os.path.join(root, "sumn_run")
    model = restore_model(read_run_config(run), os.path.join(run, "ckpt-4"))
    histories = json.loads(str(expected["sumn_histories"]))
    inputs = history_to_model_inputs(tf.ragged.constant(histories, dtype=tf.int32))
    np.testing.assert_allclose(model.encode(inputs).numpy(), expected["sumn_vectors"],
                               **SAME_FLOAT32)


@pytest.mark.parametrize("task", ["task_serial", "task_parallel", "task_finelast"])
def test_a_task_folder_of_the_old_code_predicts_as_it_did(legacy, task):
    root, expected = legacy
    items = tf.ragged.constant(json.loads(str(expected["task_items"])), dtype=tf.int32)
    model, _ = load_task(os.path.join(root, task), items[:2])
    users = model(model.inputs_for(items)).numpy()
    np.testing.assert_allclose(users, expected[f"{task}_users"], **SAME_FLOAT32)
    logits = model.head(tf.constant(users)).numpy()
    np.testing.assert_allclose(logits, expected[f"{task}_logits"], **SAME_FLOAT32)
