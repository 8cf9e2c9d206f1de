"""Writes what a served task of a continual folder says about each user: vector and prediction.

One Parquet file, ``task_outputs.parquet``, one row per user:

* ``id`` string, ``embedding`` fixed_size_list<float32>[dim] (the task's user
  vector, the same column name as ``user_vector_writer``'s layouts);
* a classification task: ``prediction`` (the most likely label value, as
  text) and ``probabilities`` fixed_size_list<float32>[classes] in the
  order of ``inference.json``'s ``class_values``;
* an item task: ``top_items`` list<string>, the best-scored item ids of the
  catalogue (``items.txt``), the user's own history left out.

The caller writes it inside a temporary folder that is renamed when complete.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.schema import ID
from data_dumper.user_vector_writer import EMBEDDING

TASK_OUTPUTS_FILE = "task_outputs.parquet"


def _fixed_lists(values):
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_task_outputs(folder, ids, outputs, item_names):
    """Writes ``folder/task_outputs.parquet``; returns its path.

    Args:
        folder: the (temporary) output folder.
        ids: [n] user ids (str).
        outputs: ``model.continual.serving.task_outputs``: ``vectors`` [n, dim]
            and ``prediction`` + ``probabilities`` or ``top_items`` [n, k] item indices.
        item_names: the item index (``items.txt`` lines), index -> item id.
    """
    columns = {ID: pa.array(list(ids), pa.string()), EMBEDDING: _fixed_lists(outputs["vectors"])}
    if "prediction" in outputs:
        columns["prediction"] = pa.array([str(value) for value in outputs["prediction"]],
                                         pa.string())
        columns["probabilities"] = _fixed_lists(outputs["probabilities"])
    if "top_items" in outputs:
        names = np.asarray(item_names, dtype=object)
        columns["top_items"] = pa.array([names[row].tolist() for row in outputs["top_items"]],
                                        pa.list_(pa.string()))
    path = os.path.join(folder, TASK_OUTPUTS_FILE)
    pq.write_table(pa.table(columns), path)
    return path
