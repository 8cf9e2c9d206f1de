"""NextItNet / GRec pretraining and PeterRec fine-tuning as a user runs them, on small demo tables."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from main import finetune as finetune_entry_point
from util.cli import run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BACKBONE = ["--model_dim=16", "--dilations=1,2", "--batch_size=16", "--log_every=1",
                 "--max_items_per_user=20"]
TINY_TASK = ["--epochs=2", "--batch_size=32"]


def run(script, *flags, check=True):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, script, *flags], cwd=REPO, capture_output=True,
                            text=True, env=environment, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("demo") / "tables")
    # 400 items (not the demo's 2,000) keep the item softmax of these tiny runs cheap.
    run("main/build_tables.py", "--demo", "--demo_users=400", "--demo_items=400", f"--output_dir={folder}",
        "--max_items_per_user=20")
    return folder


@pytest.fixture(scope="module")
def nextitnet_run(tables, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("nextitnet"))
    result = run("main/train.py", "--model=nextitnet", f"--tables={tables}",
                 f"--checkpoint_dir={folder}", "--max_steps=6", "--snapshot=3", *TINY_BACKBONE)
    return folder, result


@pytest.fixture(scope="module")
def peterrec_task(nextitnet_run, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("task") / "segment-peterrec")
    result = run("main/finetune.py", f"--pretrained={nextitnet_run[0]}", "--task=segment",
                 "--method=peterrec", f"--output_dir={folder}", *TINY_TASK)
    return folder, result


def _losses(stdout):
    return [float(loss) for loss in re.findall(r"step \d+  loss ([0-9.]+)", stdout)]


def test_nextitnet_pretraining_writes_a_resumable_run(nextitnet_run, tables):
    folder, result = nextitnet_run
    config = json.load(open(os.path.join(folder, "model_arch.json")))
    assert config["model"] == "nextitnet" and config["dilations"] == [1, 2]
    manifest = json.load(open(os.path.join(tables, "manifest.json")))
    assert config["num_item_ids"] == manifest["num_item_ids"]
    assert {"ckpt-3.index", "ckpt-6.index"} <= set(os.listdir(folder))
    losses = _losses(result.stdout)
    assert len(losses) == 6 and all(np.isfinite(losses))
    # A full softmax over n items starts near log(n).
    assert abs(losses[0] - np.log(manifest["num_item_ids"])) < 1.0
    again = run("main/train.py", "--model=nextitnet", f"--tables={tables}",
                f"--checkpoint_dir={folder}", "--max_steps=6", *TINY_BACKBONE)
    assert "nothing to do" in again.stdout


def test_grec_trains_with_masked_items_and_sampled_softmax(tables, tmp_path):
    result = run("main/train.py", "--model=grec", f"--tables={tables}",
                 f"--checkpoint_dir={tmp_path / 'grec'}", "--max_steps=3", "--num_sampled=20",
                 "--mask_fraction=0.3", *TINY_BACKBONE)
    assert "masked-item prediction" in result.stdout
    assert len(_losses(result.stdout)) == 3


def test_changed_architecture_is_refused(nextitnet_run, tables):
    result = run("main/train.py", "--model=nextitnet", f"--tables={tables}",
                 f"--checkpoint_dir={nextitnet_run[0]}", "--max_steps=8", "--model_dim=32",
                 "--dilations=1,2", "--batch_size=16", "--max_items_per_user=20", check=False)
    assert result.returncode == 2
    assert "--model_dim was 16, now 32" in result.stderr
    assert "Traceback" not in result.stderr


def test_peterrec_trains_patches_only_and_reports_its_share(peterrec_task, nextitnet_run):
    folder, result = peterrec_task
    match = re.search(r"trainable parameters: ([\d,]+) \(([\d.]+)% of FineAll's ([\d,]+)\)",
                      result.stdout)
    assert match, result.stdout
    config = json.load(open(os.path.join(folder, "task.json")))
    assert config["parameters"]["trainable"] == int(match.group(1).replace(",", ""))
    assert config["parameters"]["ratio_to_fineall"] < 0.5
    assert config["patch"] == "serial" and config["method"] == "peterrec"
    metrics = json.load(open(os.path.join(folder, "metrics.json")))
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["auc"] is not None
    # Only patches, LayerNorms and the head are saved: no embedding, no convolution kernel.
    saved = config["saved_variables"]
    assert saved and not any("embedding" in path for path in saved)


def test_peterrec_leaves_the_backbone_bit_identical(peterrec_task, nextitnet_run):
    import tensorflow as tf

    from model.finetune.task_checkpoint import load_task
    from model.inference.restore import build_run_model
    from util.run_config import read_run_config

    folder, _ = peterrec_task
    pretrained = build_run_model(read_run_config(nextitnet_run[0]))
    tf.train.Checkpoint(model=pretrained).read(
        tf.train.latest_checkpoint(nextitnet_run[0])).expect_partial()
    sample = tf.ragged.constant([[3, 4, 5], [6]], dtype=tf.int32)
    model, config = load_task(folder, sample)
    # --train_layer_norms (on by default) makes the LayerNorms task parameters, saved
    # with the task; the embedding and every convolution must not move at all.
    tuned_norms = {id(v) for v in model.encoder.layer_norm_variables()}
    pairs = [(original, tuned) for original, tuned in zip(pretrained.encoder.backbone_variables(),
                                                          model.encoder.backbone_variables())
             if id(tuned) not in tuned_norms]
    assert len(pairs) == 1 + 2 * 2 * len(config["dilations"])  # embedding + 2 convs x (kernel, bias)
    for original, tuned in pairs:
        np.testing.assert_array_equal(original.numpy(), tuned.numpy())
    assert len(config["saved_variables"]) == (
        len(model.encoder.adapter_variables()) + len(model.encoder.layer_norm_variables())
        + len(model.head.trainable_variables))
    # The patches did train: a fresh patch's up-projection is all zeros.
    assert any(np.abs(v.numpy()).max() > 0 for v in model.encoder.adapter_variables())


def test_saved_task_reloads_to_the_same_predictions(peterrec_task):
    import tensorflow as tf

    from model.finetune.task_checkpoint import load_task

    folder, _ = peterrec_task
    sample = tf.ragged.constant([[3, 4, 5, 9], [6, 7]], dtype=tf.int32)
    first, _ = load_task(folder, sample)
    second, _ = load_task(folder, sample)
    logits = [m.head(m(m.inputs_for(sample))).numpy() for m in (first, second)]
    np.testing.assert_allclose(logits[0], logits[1], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["fineall", "finecls", "finelast", "scratch"])
def test_every_baseline_method_runs(method, nextitnet_run, tmp_path):
    folder = str(tmp_path / method)
    result = run("main/finetune.py", f"--pretrained={nextitnet_run[0]}", "--task=segment",
                 f"--method={method}", f"--output_dir={folder}", "--epochs=1",
                 "--batch_size=64")
    config = json.load(open(os.path.join(folder, "task.json")))
    ratio = config["parameters"]["ratio_to_fineall"]
    if method in ("fineall", "scratch"):
        assert ratio == pytest.approx(1.0)
    else:
        assert ratio < 1.0
    assert "test (" in result.stdout


def test_recommendation_task_reports_sampled_and_full_ranking(nextitnet_run, tmp_path):
    folder = str(tmp_path / "items")
    run("main/finetune.py", f"--pretrained={nextitnet_run[0]}", "--task=items",
        "--method=peterrec", f"--output_dir={folder}", "--epochs=1", "--batch_size=64",
        "--num_negatives=4")
    metrics = json.load(open(os.path.join(folder, "metrics.json")))
    assert set(metrics) == {"hr@5_sampled", "mrr@5_sampled", "hr@10_full", "ndcg@10_full"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert metrics["mrr@5_sampled"] <= metrics["hr@5_sampled"]


def test_an_items_head_tied_to_the_item_embedding_trains_only_a_scale_and_shift(nextitnet_run,
                                                                               tmp_path):
    import tensorflow as tf

    from model.finetune.task_checkpoint import load_task

    folder = str(tmp_path / "items-tied")
    run("main/finetune.py", f"--pretrained={nextitnet_run[0]}", "--task=items",
        "--method=finecls", "--item_head=item_embedding", f"--output_dir={folder}",
        "--epochs=1", "--batch_size=64", "--learning_rate=0.05")
    config = json.load(open(os.path.join(folder, "task.json")))
    assert config["item_head"] == "item_embedding"
    # FineCLS trains the head alone: a scale and a shift of the 16-wide user vector, no item table.
    assert config["parameters"]["trainable"] == 2 * 16
    metrics = json.load(open(os.path.join(folder, "metrics.json")))
    assert set(metrics) == {"hr@5_sampled", "mrr@5_sampled", "hr@10_full", "ndcg@10_full"}
    model, _ = load_task(folder, tf.ragged.constant([[3, 4, 5], [6, 7]], dtype=tf.int32))
    assert not np.allclose(model.head.scale.numpy(), 1.0)  # trained, and restored as trained


def test_a_tied_items_head_refuses_a_readout_wider_than_the_item_embedding(nextitnet_run,
                                                                           tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(finetune_entry_point.main,
                [f"--pretrained={nextitnet_run[0]}", "--task=items", "--readout=cls_mean",
                 "--item_head=item_embedding", f"--output_dir={tmp_path / 'x'}"])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--readout=cls_mean" in stderr and "Traceback" not in stderr
    assert not os.path.exists(tmp_path / "x")


def test_finetune_errors_name_the_flag(nextitnet_run, tmp_path, peterrec_task, capsys):
    # In-process through run_cli, as python main/finetune.py runs it: each case stops
    # before any training, so a TensorFlow start-up per case would buy nothing.
    cases = [
        ([f"--pretrained={nextitnet_run[0]}", "--task=height", f"--output_dir={tmp_path / 'x'}"],
         "no column 'height'"),
        ([f"--pretrained={nextitnet_run[0]}", "--task=segment", f"--output_dir={peterrec_task[0]}"],
         "--overwrite"),
        ([f"--pretrained={tmp_path / 'nowhere'}", "--task=segment"], "model_arch.json"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run_cli(finetune_entry_point.main, argv)
        stderr = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in stderr, (argv, stderr)
        assert "Traceback" not in stderr
    assert not os.path.exists(tmp_path / "x")


def test_an_attention_readout_over_a_chosen_history_trains_saves_and_reloads(nextitnet_run,
                                                                             tmp_path):
    import tensorflow as tf

    from model.finetune.task_checkpoint import load_task

    folder = str(tmp_path / "segment-finecls-attention")
    result = run("main/finetune.py", f"--pretrained={nextitnet_run[0]}", "--task=segment",
                 "--method=finecls", "--readout=attention", "--max_items_per_user=10",
                 f"--output_dir={folder}", "--epochs=1", "--batch_size=64")
    config = json.load(open(os.path.join(folder, "task.json")))
    assert config["readout"] == "attention" and config["max_items_per_user"] == 10
    # FineCLS trains the head and the readout: W1 [16, 16] + b1 [16] + w2 [16, 1] + head.
    head = 16 * 2 + 2
    assert config["parameters"]["trainable"] == head + 16 * 16 + 16 + 16
    assert any("readout" in path for path in config["saved_variables"])
    sample = tf.ragged.constant([[3, 4, 5, 9], [6, 7]], dtype=tf.int32)
    first, _ = load_task(folder, sample)
    second, _ = load_task(folder, sample)
    vectors = [m(m.inputs_for(sample)).numpy() for m in (first, second)]
    np.testing.assert_array_equal(vectors[0], vectors[1])
    # The readout trained away from its initial weights, and those weights were restored.
    fresh = first.readout.__class__("attention")
    fresh.build((None, None, 16))
    assert not np.allclose(fresh.weights[0].numpy(), first.readout.weights[0].numpy())
    # The table keeps 20 items per user; asking for more says so and reads what is there.
    more = run("main/finetune.py", f"--pretrained={nextitnet_run[0]}", "--task=segment",
               "--method=finecls", "--readout=cls_mean", "--max_items_per_user=50",
               f"--output_dir={tmp_path / 'more'}", "--epochs=1", "--batch_size=64")
    assert "keeps at most 20 items per user" in more.stdout
    assert json.load(open(tmp_path / "more" / "task.json"))["parameters"]["trainable"] == 32 * 2 + 2


def test_a_readout_for_next_item_prediction_is_refused(nextitnet_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(finetune_entry_point.main,
                [f"--pretrained={nextitnet_run[0]}", "--task=next_item", "--readout=mean",
                 f"--output_dir={tmp_path / 'x'}"])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--readout=mean" in stderr and "Traceback" not in stderr
    assert not os.path.exists(tmp_path / "x")


def test_grec_backbone_fine_tunes_with_parallel_patches(tables, tmp_path):
    pretrained = str(tmp_path / "grec")
    run("main/train.py", "--model=grec", f"--tables={tables}", f"--checkpoint_dir={pretrained}",
        "--max_steps=2", *TINY_BACKBONE)
    folder = str(tmp_path / "task")
    result = run("main/finetune.py", f"--pretrained={pretrained}", "--task=interest",
                 "--method=peterrec", "--patch=parallel", f"--output_dir={folder}", "--epochs=1",
                 "--batch_size=64")
    config = json.load(open(os.path.join(folder, "task.json")))
    assert config["causal"] is False and config["patch"] == "parallel"
    assert "backbone: " in result.stdout


def test_a_sumn_run_is_not_a_backbone(tmp_path):
    run_dir = tmp_path / "sumn"
    run_dir.mkdir()
    (run_dir / "model_arch.json").write_text(json.dumps({"model": "sumn"}))
    result = run("main/finetune.py", f"--pretrained={run_dir}", "--task=segment", check=False)
    assert result.returncode == 2 and "--model=nextitnet" in result.stderr
    assert "Traceback" not in result.stderr


def test_sampled_negatives_are_items_the_user_never_met():
    import tensorflow as tf

    from contracts import schema
    from evaluation.sampled_negatives import sample_unseen_items

    num_item_ids = 40
    items = tf.ragged.constant([list(range(3, 30)), [5, 6], [7]], dtype=tf.int32)
    targets = tf.ragged.constant([[30, 31], [8], [9, 10]], dtype=tf.int32)
    negatives = sample_unseen_items(items, targets, num_item_ids, count=99, seed=3)
    assert negatives.shape == (3, 99)
    assert negatives.min() >= schema.FIRST_ITEM_ID and negatives.max() < num_item_ids
    for row, (history, target) in enumerate(zip(items.to_list(), targets.to_list())):
        assert not set(negatives[row]) & (set(history) | set(target))
    again = sample_unseen_items(items, targets, num_item_ids, count=99, seed=3)
    np.testing.assert_array_equal(negatives, again)
