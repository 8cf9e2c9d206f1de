"""A corpus of bad inputs across the six entry points: each ends in ONE clear line.

Every case runs an entry point's ``main`` in-process through ``util.cli.run_cli``
(as ``python main/<script>.py`` does, without a TensorFlow start-up per case)
and asserts what a user sees: exit status 2, exactly one ``error:`` line on
stderr and no traceback, and the output location exactly as it was before
(absent stays absent; an existing folder keeps its files). Most cases stop at
flag parsing or validation; those that need a table folder or a trained run
share one tiny demo table folder, one SUMN run and one NextItNet run.
"""

import json
import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import schema
from main import build_tables, continual, evaluate, finetune, inference, train
from util.cli import run_cli

TINY_SUMN = ["--model_dim=8", "--word_emb_dim=8", "--mlp_layers=16", "--num_hops=2",
             "--batch_size=16", "--max_steps=2", "--snapshot=2", "--log_every=1"]
TINY_BACKBONE = ["--model=nextitnet", "--model_dim=8", "--dilations=1", "--batch_size=16",
                 "--max_items_per_user=20", "--max_steps=2", "--snapshot=2", "--log_every=1"]
VOCABULARY_SIZE = 50


def _run_quietly(entry_point, argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(entry_point.main, argv)
    assert exit_info.value.code in (0, None), f"{entry_point.__name__} {argv} failed"


def _training_rows(**overrides):
    row = {"id": "u0", "history": [[2, 3], [4]], "history_length": 2, "target_words": [5, 6],
           "target_counts": [2, 1]}
    row.update(overrides)
    return [row, dict(row, id="u1")]


def _table_folder(root, name, subdir, rows, table_schema=schema.TRAINING_SCHEMA):
    """A table folder with one shard of ``rows`` and a manifest; returns its path."""
    folder = os.path.join(root, name)
    os.makedirs(os.path.join(folder, subdir))
    pq.write_table(pa.Table.from_pylist(rows, schema=table_schema),
                   os.path.join(folder, subdir, schema.shard_name(0, 1, "parquet")))
    with open(os.path.join(folder, schema.MANIFEST_FILE), "w") as handle:
        json.dump({"schema_version": schema.SCHEMA_VERSION, "vocabulary_size": VOCABULARY_SIZE,
                   "num_item_ids": 40}, handle)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """{placeholder: path} of every shared input the cases name as ``{placeholder}``."""
    root = str(tmp_path_factory.mktemp("bad_inputs"))
    tables = os.path.join(root, "demo_tables")
    _run_quietly(build_tables, ["--demo", "--demo_users=120", "--demo_items=400", f"--output_dir={tables}",
                                "--num_shards=2", "--max_items_per_user=20"])
    sumn = os.path.join(root, "sumn")
    _run_quietly(train, [f"--tables={tables}", f"--checkpoint_dir={sumn}", *TINY_SUMN])
    nextitnet = os.path.join(root, "nextitnet")
    _run_quietly(train, [f"--tables={tables}", f"--checkpoint_dir={nextitnet}", *TINY_BACKBONE])

    paths = {"tables": tables, "sumn": sumn, "nextitnet": nextitnet, "root": root}
    paths["padding_table"] = _table_folder(root, "padding", schema.TRAIN_SUBDIR,
                                           _training_rows(history=[[2, 0], [4]]))
    paths["repeated_ids"] = _table_folder(root, "repeated", schema.TRAIN_SUBDIR,
                                          _training_rows() + _training_rows())
    paths["rising_counts"] = _table_folder(root, "rising", schema.TRAIN_SUBDIR,
                                           _training_rows(target_counts=[1, 2]))
    paths["huge_word"] = _table_folder(
        root, "huge", schema.INFERENCE_SUBDIR,
        [{"id": "u0", "history": [[2, 10 ** 6]], "history_length": 1}], schema.INFERENCE_SCHEMA)
    paths["special_items"] = _table_folder(
        root, "special", schema.SEQUENCES_SUBDIR,
        [{"id": "u0", "items": [3, 1, 4], "items_length": 3, "target_items": []}],
        schema.SEQUENCE_SCHEMA)
    empty = os.path.join(root, "empty_shard", schema.TRAIN_SUBDIR)
    os.makedirs(empty)
    open(os.path.join(empty, schema.shard_name(0, 1, "parquet")), "wb").close()
    shutil.copy(os.path.join(paths["padding_table"], schema.MANIFEST_FILE), os.path.dirname(empty))
    paths["empty_shard"] = os.path.dirname(empty)

    paths["a_file"] = os.path.join(root, "notes.txt")
    with open(paths["a_file"], "w") as handle:
        handle.write("not a table\n")
    paths["log_without_timestamp"] = os.path.join(root, "log.csv")
    with open(paths["log_without_timestamp"], "w") as handle:
        handle.write("user_id,item_id\n1,10\n1,11\n2,10\n")
    paths["vectors_tsv"] = os.path.join(root, "vectors.tsv")
    with open(paths["vectors_tsv"], "w") as handle:
        handle.write("alice\t0.5,1\t2\nbob\t-1,2\t1\n")
    paths["string_id_labels"] = os.path.join(root, "labels.csv")
    with open(paths["string_id_labels"], "w") as handle:
        handle.write("user_id,likes_jazz\nalice,1\nbob,0\n")
    return paths


# (entry point, argv with {placeholders}, what the error line says)
CASES = [
    # ---- main/build_tables.py
    pytest.param(build_tables, ["--demo"], r"the following arguments are required: --output_dir",
                 id="build_tables-no_output_dir"),
    pytest.param(build_tables, ["--demo", "--output_dir={out}", "--num_shards=0"],
                 r"--num_shards=0 must be at least 1", id="build_tables-zero_shards"),
    pytest.param(build_tables, ["--demo", "--movielens={root}", "--output_dir={out}"],
                 r"--demo.*--movielens", id="build_tables-two_sources"),
    pytest.param(build_tables, ["--log={root}/missing.csv", "--output_dir={out}"],
                 r"missing\.csv", id="build_tables-missing_log"),
    pytest.param(build_tables, ["--log={log_without_timestamp}", "--output_dir={out}"],
                 r"no column .timestamp. \(named by --log_order_column\)", id="build_tables-log_without_order_column"),
    pytest.param(build_tables, ["--log={log_without_timestamp}", "--log_order_column=item_id",
                                "--log_item_column=sku", "--output_dir={out}"],
                 r"sku.*--log_item_column", id="build_tables-missing_item_column"),
    pytest.param(build_tables, ["--demo", "--items={a_file}", "--output_dir={out}"],
                 r"--items goes with --log", id="build_tables-items_without_log"),
    pytest.param(build_tables, ["--demo", "--target_fraction=1.5", "--output_dir={out}"],
                 r"--target_fraction=1.5 must be between 0 and 1", id="build_tables-target_fraction"),
    pytest.param(build_tables, ["--demo", "--max_vocabulary=1", "--output_dir={out}"],
                 r"--max_vocabulary=1 must be more than", id="build_tables-tiny_vocabulary"),
    pytest.param(build_tables, ["--demo", "--format=csv", "--output_dir={out}"],
                 r"argument --format: invalid choice", id="build_tables-unknown_format"),
    pytest.param(build_tables, ["--demo", "--output_dir={a_file}"],
                 r"--output_dir=.*notes\.txt is a file", id="build_tables-output_is_a_file"),
    pytest.param(build_tables, ["--demo", "--output_dir={occupied}"],
                 r"--output_dir=.* is not empty", id="build_tables-output_holds_other_files"),
    pytest.param(build_tables, ["--demo", "--demo_items=3", "--output_dir={out}"],
                 r"--demo_items=3 must be at least", id="build_tables-too_few_demo_items"),
    pytest.param(build_tables, ["--demo", "--duckdb_memory_limit=lots", "--output_dir={out}"],
                 r"--duckdb_memory_limit=lots", id="build_tables-memory_limit"),
    pytest.param(build_tables, ["--demo", "--num_shards=x", "--output_dir={out}"],
                 r"argument --num_shards: invalid int value", id="build_tables-shards_not_a_number"),

    # ---- main/train.py
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--batch_size=0"],
                 r"argument --batch_size: must be a positive integer", id="train-zero_batch"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--dropout=2"],
                 r"argument --dropout: must be in \[0, 1\)", id="train-dropout_alias_named"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--dropout_rate=-1"],
                 r"argument --dropout_rate: must be in \[0, 1\)", id="train-dropout_rate_named"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--mlp_layers=a,b"],
                 r"argument --mlp_layers: must be comma-separated layer widths",
                 id="train-mlp_layers"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--pooling=median"],
                 r"argument --pooling: invalid choice", id="train-unknown_pooling"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--weighted_target=maybe"],
                 r"argument --weighted_target: must be 0/1", id="train-boolean"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--model=grec",
                         "--mask_fraction=0"],
                 r"--mask_fraction must be more than 0 for --model=grec", id="train-grec_no_mask"),
    pytest.param(train, ["--tables={root}/missing", "--checkpoint_dir={out}"],
                 r"--tables.*missing", id="train-missing_tables"),
    pytest.param(train, ["--tables={a_file}", "--checkpoint_dir={out}"],
                 r"--tables: cannot tell the format", id="train-tables_not_a_shard"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={out}", "--num_vocabulary=5"],
                 r"--num_vocabulary=5 is smaller than the vocabulary", id="train-small_vocabulary"),
    pytest.param(train, ["--tables={padding_table}", "--checkpoint_dir={out}"],
                 r"column history, row 0: word id 0 is padding", id="train-padding_in_behaviour"),
    pytest.param(train, ["--tables={repeated_ids}", "--checkpoint_dir={out}"],
                 r"column id, row 2: id 'u0' appears more than once", id="train-repeated_ids"),
    pytest.param(train, ["--tables={rising_counts}", "--checkpoint_dir={out}"],
                 r"column target_counts, row 0: count 2 follows a smaller count",
                 id="train-counts_not_most_frequent_first"),
    pytest.param(train, ["--tables={empty_shard}", "--checkpoint_dir={out}"],
                 r"is empty \(0 bytes\)", id="train-empty_shard"),
    pytest.param(train, ["--tables={tables}", "--checkpoint_dir={sumn}", "--model_dim=16",
                         *TINY_SUMN[1:]],
                 r"holds a run with another architecture", id="train-changed_architecture"),

    # ---- main/inference.py
    pytest.param(inference, ["--checkpoint_dir={root}/missing", "--outputs={out}"],
                 r"--checkpoint_dir .*missing does not exist", id="inference-missing_run"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--step=7", "--outputs={out}"],
                 r"--step=7: .* has no ckpt-7", id="inference-missing_step"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--step=-1", "--outputs={out}"],
                 r"--step=-1 is negative", id="inference-negative_step"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--hop=9", "--outputs={out}"],
                 r"--hop=9 is out of range", id="inference-hop"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--output_format=csv", "--outputs={out}"],
                 r"--output_format='csv' is not an output format", id="inference-format"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--output_format=tsv", "--separator=.",
                             "--outputs={out}"],
                 r"--separator='\.' cannot separate", id="inference-separator_dot"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--output_format=tsv", "--separator=-",
                             "--outputs={out}"],
                 r"--separator='-' cannot separate", id="inference-separator_minus"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--output_format=tsv", "--separator=e",
                             "--outputs={out}"],
                 r"--separator='e' cannot separate", id="inference-separator_exponent"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--output_format=tsv", "--separator=,",
                             "--outputs={out}"],
                 r"--separator=',' cannot separate", id="inference-separator_comma"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--outputs={a_file}"],
                 r"--outputs[ =].*notes\.txt is a file", id="inference-outputs_is_a_file"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--tables={huge_word}", "--outputs={out}"],
                 r"column history, row 0: word id 1000000 is outside the vocabulary",
                 id="inference-word_beyond_vocabulary"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--slice_id=3", "--slice_count=2",
                             "--outputs={out}"],
                 r"--slice_id=3 must be in 0\.\.1", id="inference-slice"),
    pytest.param(inference, ["--checkpoint_dir={sumn}", "--batch_size=0", "--outputs={out}"],
                 r"argument --batch_size: must be a positive integer", id="inference-zero_batch"),
    pytest.param(inference, ["--checkpoint_dir={nextitnet}", "--outputs={out}"],
                 r"holds a nextitnet run; main/inference.py writes", id="inference-backbone_run"),

    # ---- main/evaluate.py
    pytest.param(evaluate, ["--vectors={root}/missing", "--labels={tables}/labels.parquet",
                            "--output_dir={out}"],
                 r"--vectors: .*missing", id="evaluate-missing_vectors"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={root}/missing.csv",
                            "--output_dir={out}"],
                 r"--labels: .*missing\.csv", id="evaluate-missing_labels"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}", "--C=0",
                            "--output_dir={out}"],
                 r"argument --C: expected positive (finite )?numbers", id="evaluate-C"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}",
                            "--baseline_vectors=random", "--output_dir={out}"],
                 r"argument --baseline_vectors: expected NAME=PATH", id="evaluate-baseline"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}",
                            "--tasks=likes_rock", "--output_dir={out}"],
                 r"--tasks: .*likes_rock", id="evaluate-unknown_task"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}",
                            "--split=column:fold", "--output_dir={out}"],
                 r"--split: .*fold", id="evaluate-unknown_split_column"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}",
                            "--separator=.", "--output_dir={out}"],
                 r"--vectors: --separator='\.' cannot split tsv vector lines",
                 id="evaluate-separator"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}",
                            "--output_dir={out}"],
                 r"--split canonical needs integer user ids.*use --split column:NAME",
                 id="evaluate-canonical_split_of_string_ids"),
    pytest.param(evaluate, ["--vectors={vectors_tsv}", "--labels={string_id_labels}",
                            "--name=majority", "--output_dir={out}"],
                 r"--name and --baseline_vectors names must be distinct", id="evaluate-name"),

    # ---- main/finetune.py
    pytest.param(finetune, ["--pretrained={root}/missing", "--task=segment", "--output_dir={out}"],
                 r"--pretrained .*missing has no model_arch.json", id="finetune-missing_run"),
    pytest.param(finetune, ["--pretrained={sumn}", "--task=segment", "--output_dir={out}"],
                 r"--pretrained .* is a sumn run; fine-tuning needs", id="finetune-sumn_run"),
    pytest.param(finetune, ["--pretrained={nextitnet}", "--pretrained_step=99", "--task=segment",
                            "--output_dir={out}"],
                 r"--pretrained_step=99: .* has no ckpt-99", id="finetune-step_named"),
    pytest.param(finetune, ["--pretrained={nextitnet}", "--task=segment", "--method=lora",
                            "--output_dir={out}"],
                 r"argument --method: invalid choice", id="finetune-unknown_method"),
    pytest.param(finetune, ["--pretrained={nextitnet}", "--task=segment",
                            "--validation_fraction=1", "--output_dir={out}"],
                 r"argument --validation_fraction: must be in \[0, 1\)",
                 id="finetune-validation_fraction"),
    pytest.param(finetune, ["--pretrained={nextitnet}", "--task=segment",
                            "--labels={root}/missing.csv", "--output_dir={out}"],
                 r"--labels: .*missing\.csv", id="finetune-missing_labels"),
    pytest.param(finetune, ["--pretrained={nextitnet}", "--task=segment",
                            "--tables={special_items}", "--output_dir={out}"],
                 r"column items, row 0: item index 1 is the special token <mask>",
                 id="finetune-special_item"),
    pytest.param(finetune, ["--pretrained={nextitnet}", "--task=segment",
                            "--output_dir={occupied}"],
                 r"--output_dir .* is not empty", id="finetune-output_holds_other_files"),

    # ---- main/continual.py
    pytest.param(continual, ["--model_dir={out}"], r"--task is empty", id="continual-no_task"),
    pytest.param(continual, ["--model_dir={out}", "--task=segment"], r"pass --pretrained",
                 id="continual-new_folder_without_pretrained"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={sumn}", "--task=segment"],
                 r"--pretrained .* is a sumn run; a continual folder starts from",
                 id="continual-sumn_run"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={nextitnet}", "--task=segment",
                             "--method=peterrec"],
                 r"argument --method: invalid choice", id="continual-not_a_continual_method"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={nextitnet}", "--task=segment",
                             "--prune_ratio=1"],
                 r"argument --prune_ratio: must be in \[0, 1\), got 1",
                 id="continual-prune_everything"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={nextitnet}", "--task=segment",
                             "--method=teracon", "--s_max=0.5"],
                 r"argument --s_max: must be 0 \(the folder's\) or at least 1, got 0.5",
                 id="continual-teracon_mask_scale_below_1"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={nextitnet}", "--task=segment",
                             "--method=teracon", "--retention_weight=-1"],
                 r"argument --retention_weight: must be 0 or more, got -1",
                 id="continual-teracon_negative_retention"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={nextitnet}", "--task=segment",
                             "--pretrained_step=99"],
                 r"--pretrained_step=99: .* has no ckpt-99", id="continual-step_named"),
    pytest.param(continual, ["--model_dir={occupied}", "--pretrained={nextitnet}",
                             "--task=segment"],
                 r"--model_dir .* is not empty and holds no continual.json",
                 id="continual-foreign_folder"),
    pytest.param(continual, ["--model_dir={a_file}", "--pretrained={nextitnet}", "--task=segment"],
                 r"--model_dir.*notes\.txt is a file", id="continual-model_dir_is_a_file"),
    pytest.param(continual, ["--model_dir={out}", "--pretrained={nextitnet}", "--task=segment",
                             "--labels={root}/missing.csv"],
                 r"--labels: .*missing\.csv", id="continual-missing_labels"),
    pytest.param(continual, ["--model_dir={out}", "--list"],
                 r"--model_dir .* is not a continual model folder", id="continual-list_nothing"),
    pytest.param(inference, ["--checkpoint_dir={nextitnet}", "--task=segment", "--outputs={out}"],
                 r"--task=segment: --checkpoint_dir .* is a nextitnet training run, which has no tasks",
                 id="inference-task_of_a_training_run"),
]


def _state(path):
    """What is at ``path``: None, a file's bytes, or a folder's sorted listing (recursively)."""
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return handle.read()
    return sorted(os.path.relpath(os.path.join(folder, name), path)
                  for folder, folders, files in os.walk(path) for name in folders + files)


def _output_of(argv):
    """The output location a case names: --outputs (inference), else --output_dir, --model_dir or --checkpoint_dir."""
    for flag in ("--outputs=", "--output_dir=", "--model_dir=", "--checkpoint_dir="):
        values = [arg[len(flag):] for arg in argv if arg.startswith(flag)]
        if values:
            return values[-1]
    return None


@pytest.mark.parametrize("entry_point, argv, message", CASES)
def test_bad_input_ends_in_one_error_line_and_leaves_nothing_behind(
        entry_point, argv, message, inputs, tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "thesis.txt").write_text("someone's work\n")
    places = dict(inputs, out=str(tmp_path / "out"), occupied=str(occupied))
    argv = [arg.format(**places) for arg in argv]
    output = _output_of(argv)
    before = _state(output) if output else None
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        run_cli(entry_point.main, argv)
    err = capsys.readouterr().err

    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    assert re.search(message, error_lines[0]), error_lines[0]
    if output:
        assert _state(output) == before, f"{output} changed"


def test_the_corpus_covers_every_entry_point_with_forty_cases():
    entry_points = {case.values[0] for case in CASES}
    assert entry_points == {build_tables, train, inference, evaluate, finetune, continual}
    assert len(CASES) >= 40
