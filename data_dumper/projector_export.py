"""Exports a sample of user vectors for TensorBoard's embedding projector.

The folder it writes is what the TensorBoard documentation describes
("Visualizing data using the embedding projector"): a ``tf.train.Checkpoint``
of one variable holding the vectors, ``metadata.tsv`` naming each row, and
``projector_config.pbtxt`` tying the two together. View it with
``tensorboard --logdir <folder>`` (Projector tab).

    <folder>/
      projector_config.pbtxt
      metadata.tsv              header "id<TAB>length", then one line per vector
      checkpoint                index of the checkpoint below (relative paths)
      user_vectors.ckpt-1.index, user_vectors.ckpt-1.data-00000-of-00001

The folder is built under a temporary name and swapped in whole, so a killed
job never leaves a half-written export.
"""

import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from util.atomic import atomic_directory

METADATA_FILE = "metadata.tsv"
CHECKPOINT_PREFIX = "user_vectors.ckpt"
# The checkpoint key of the ``user_vectors`` attribute of a tf.train.Checkpoint.
TENSOR_NAME = "user_vectors/.ATTRIBUTES/VARIABLE_VALUE"


def _metadata_text(ids, lengths):
    # Tabs and line breaks inside an id would shift the projector's columns.
    clean = [str(user_id).replace("\t", " ").replace("\n", " ").replace("\r", " ") for user_id in ids]
    rows = [f"{user_id}\t{int(length)}" for user_id, length in zip(clean, lengths)]
    return "id\tlength\n" + "".join(row + "\n" for row in rows)


def export_projector(folder, ids, vectors, lengths):
    """Writes the projector files for ``vectors`` into ``folder`` (replacing it).

    Args:
        folder: the output folder (created; an existing one is replaced whole).
        ids: [n] user ids (str or bytes), one metadata row each.
        vectors: [n, dim] float32 user vectors, n >= 1.
        lengths: [n] behaviours per user, a second metadata column to colour by.

    Returns:
        ``folder``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"`vectors` should be [n, dim] with n >= 1; received shape {vectors.shape}")
    if not len(ids) == len(vectors) == len(lengths):
        raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors and {len(lengths)} lengths; "
                         f"they should be equal")
    ids = [user_id.decode("utf-8", "replace") if isinstance(user_id, bytes) else user_id
           for user_id in ids]
    with atomic_directory(folder) as temporary:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o777 & ~umask)  # mkdtemp makes it private
        with open(os.path.join(temporary, METADATA_FILE), "w", encoding="utf-8") as handle:
            handle.write(_metadata_text(ids, lengths))
        # Checkpoint.save writes the `checkpoint` index with paths relative to
        # its folder, so the export still resolves after the folder is renamed.
        tf.train.Checkpoint(user_vectors=tf.Variable(vectors, trainable=False)).save(
            os.path.join(temporary, CHECKPOINT_PREFIX))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = TENSOR_NAME
        embedding.metadata_path = METADATA_FILE
        projector.visualize_embeddings(temporary, config)
    return folder
