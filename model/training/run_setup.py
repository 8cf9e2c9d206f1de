"""The pieces ``main/train.py`` assembles before the first step.

Resolving the training table (or the demo one), the vocabulary size, the run
configuration written to ``model_arch.json``, the model and its optimizer.
"""

import os

import keras
import tensorflow as tf

from contracts import schema
from data_loader.table_files import resolve_table_files
from model.sumn.model_inputs import history_to_model_inputs
from model.sumn.sumn_model import SumnModel
from model.training.fused_adam import FusedAdam
from util.errors import UserInputError


def resolve_vocabulary_size(flag_value, table_files):
    """``--num_vocabulary``, or the manifest's vocabulary size when the flag is 0.

    Raises:
        UserInputError: neither is known, or the flag is smaller than the
            vocabulary the tables were built with.
    """
    recorded = table_files.vocabulary_size
    if flag_value:
        if recorded and flag_value < recorded:
            raise UserInputError(
                f"--num_vocabulary={flag_value} is smaller than the vocabulary of "
                f"{recorded} words recorded in {table_files.manifest_path}")
        return flag_value
    if not recorded:
        raise UserInputError(
            "--num_vocabulary is 0 and the tables have no manifest.json beside them "
            "to take the vocabulary size from; pass --num_vocabulary")
    return int(recorded)


def training_run_config(flags, table_files, vocabulary_size, inference_tables=None):
    """The dict written to model_arch.json: every flag, the vocabulary, the tables' manifest."""
    config = {key: value for key, value in vars(flags).items()}
    config["mlp_layers"] = list(flags.mlp_layers)
    config["model"] = "sumn"
    config["num_vocabulary"] = int(vocabulary_size)
    config["tables"] = [os.path.abspath(path) for path in table_files.files]
    config["table_format"] = table_files.file_format
    config["tables_manifest"] = table_files.manifest
    if inference_tables:
        config["inference_tables"] = os.path.abspath(inference_tables)
    return config


def sequence_run_config(flags, table_files, num_item_ids):
    """model_arch.json of a NextItNet/GRec run: every flag, the item index size, the manifest."""
    config = {key: value for key, value in vars(flags).items()}
    config["mlp_layers"] = list(flags.mlp_layers)
    config["dilations"] = list(flags.dilations)
    config["num_item_ids"] = int(num_item_ids)
    config["tables"] = [os.path.abspath(path) for path in table_files.files]
    config["table_format"] = table_files.file_format
    config["tables_manifest"] = table_files.manifest
    if table_files.manifest_path is not None:
        config["tables_dir"] = os.path.dirname(os.path.abspath(table_files.manifest_path))
    return config


def resolve_num_item_ids(table_files):
    """The item index size from the sequence table's manifest.

    Raises:
        UserInputError: the tables have no manifest with an item index.
    """
    if not table_files.num_item_ids:
        raise UserInputError(
            f"--tables: no manifest.json with num_item_ids beside {table_files.files[0]}; "
            f"item-sequence models read a table folder written by main/build_tables.py")
    return int(table_files.num_item_ids)


def default_inference_tables(table_files):
    """The inference table that sits beside a training table, if any."""
    if table_files.manifest_path is None:
        return None
    folder = os.path.join(os.path.dirname(table_files.manifest_path), schema.INFERENCE_SUBDIR)
    return folder if os.path.isdir(folder) else None


def build_model(run_config):
    """The model of a run configuration (SUMN, NextItNet or GRec), its variables created.

    Call inside ``strategy.scope()`` so variables are mirrored.
    """
    if run_config.get("model", "sumn") != "sumn":
        return build_sequence_model(run_config)
    model = SumnModel(
        vocabulary_size=run_config["num_vocabulary"],
        word_emb_dim=run_config["word_emb_dim"],
        model_dim=run_config["model_dim"],
        pooling=run_config["pooling"],
        num_hops=run_config["num_hops"],
        mlp_layers=tuple(run_config["mlp_layers"]),
        dropout_rate=run_config["dropout_rate"],
    )
    # One tiny forward pass creates every variable, so checkpoints can be
    # restored eagerly and the optimizer can build its slots up front.
    model(history_to_model_inputs(
        tf.ragged.constant([[[schema.FIRST_WORD_ID]] * 2], dtype=tf.int32)))
    return model


def build_sequence_model(run_config):
    """A ``SequencePretrainingModel`` from a run configuration, its variables created."""
    # Imported on use: a SUMN run never loads the item-sequence layers.
    from model.nextitnet.pretraining_model import (
        CAUSAL_BY_MODEL,
        SequencePretrainingModel,
    )

    model = SequencePretrainingModel(
        num_item_ids=run_config["num_item_ids"],
        model_dim=run_config["model_dim"],
        dilations=tuple(run_config["dilations"]),
        kernel_size=run_config["kernel_size"],
        causal=CAUSAL_BY_MODEL[run_config["model"]],
        dropout_rate=run_config["dropout_rate"],
    )
    model(tf.constant([[schema.FIRST_ITEM_ID] * 2], dtype=tf.int32))
    return model


def build_optimizer(learning_rate, mixed_precision, variables, optimizer_class=FusedAdam):
    """Adam (SUMN's optimizer), loss-scaled under float16, with its slots built.

    ``FusedAdam``: Keras Adam's maths and slot variables (checkpoints of
    either load into the other) with TensorFlow's fused update kernel.
    ``optimizer_class`` swaps in another Keras optimizer (the bench compares
    ``keras.optimizers.Adam``).
    """
    optimizer = optimizer_class(learning_rate=learning_rate)
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(variables)
    return optimizer


def resolve_training_tables(tables_flag, ensure_demo_tables, demo_dir, whole_sequences=False,
                            subdir=None):
    """``--tables``, or the demo tables (built on first use) when the flag is empty.

    With ``whole_sequences`` (random windows) a table folder yields its
    inference table, which holds every user's whole sequence; ``subdir``
    names another table of the folder (``sequences`` for item-sequence models).
    """
    if not tables_flag:
        ensure_demo_tables(demo_dir)
        tables_flag = demo_dir
    if subdir is None:
        subdir = schema.INFERENCE_SUBDIR if whole_sequences else schema.TRAIN_SUBDIR
    return resolve_table_files(tables_flag, default_subdir=subdir)
