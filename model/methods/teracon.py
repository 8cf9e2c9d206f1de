"""TERACON (Kim et al., KDD 2023) as a method: task-embedding soft masks, every weight trains.

Each block gets a ``TaskEmbeddingMaskAdapter`` (``model/layers/task_embedding_mask_adapter.py``)
with a row per task the folder holds; unlike Conure nothing is frozen: the
backbone, every task's embeddings and relation rows and every task's head
train on each new task, and the knowledge-retention loss keeps the old
tasks' outputs close to those of the model from before the task
(``model/continual/teracon_learning.py``).
"""

from model.layers.task_embedding_mask_adapter import DEFAULT_S_MAX, TaskEmbeddingMaskAdapter
from model.methods.method import Method
from model.tasks.item_recommendation import ITEM_EMBEDDING

DEFAULT_RETENTION_WEIGHT = 0.7
# Pseudo-labels of item heads: the teacher's 100 best-scored items per user (0: every item).
DEFAULT_RETENTION_TOP_K = 100
# Every old task is retained on at least this share of each batch: the paper's share from
# the mask similarity alone is about 0.3% on ML-1M, one user of 128, and T1 is then forgotten
# (bench/results/continual_ml1m.md, both without the replay below: BWT -3.07 without the
# floor, -1.58 with it).
DEFAULT_RETENTION_MIN_SHARE = 0.25
# Task 1 (next-item prediction) also trains on its own loss over each new task's histories:
# beyond the paper, whose pseudo-labels alone lose 5.5 NDCG points of T1 over four tasks on
# ML-1M (bench/results/continual_ml1m.md: BWT -1.58 without the replay; -0.16 at weight 0.2,
# +0.37 at 0.5, final averages 27.80 and 28.49; with untied item heads 28.10 and 27.75, so
# the runs do not separate the two weights: see the README).
DEFAULT_FIRST_TASK_REPLAY_WEIGHT = 0.2
# The mask scale the retention loss compares old tasks at: the step's (the paper) or s_max.
RETENTION_SCALES = ("annealed", "served")


class Teracon(Method):
    name = "teracon"
    summary = ("one backbone for every task, all weights trainable: each task's embeddings "
               "generate soft masks of every block's activations; a retention loss keeps old "
               "tasks' outputs")
    continual = True
    task_tables = True
    # The item embedding trains with every task, so an item task's head scores against it and
    # stores 2 x dim weights, not a table as large as the embedding (bench/results/continual_ml1m.md).
    default_item_head = ITEM_EMBEDDING

    def block_adapter(self, block_index, description):
        return TaskEmbeddingMaskAdapter(
            num_tasks=description.get("folder_tasks", description["task_index"]),
            s_max=description["s_max"], name="adapter")

    def trainable_variables(self, task_model, description):
        adapters = [block.adapter for block in task_model.encoder.blocks]
        return (list(task_model.encoder.backbone_variables())
                + [v for adapter in adapters for v in adapter.trained_variables()]
                + list(task_model.head.trainable_variables))

    def folder_entries(self, settings):
        # Every task of a folder is served at one scale: it is the folder's, not a task's.
        return {"s_max": float(settings.s_max if settings.s_max else DEFAULT_S_MAX)}

    def description_entries(self, settings):
        return {"patch": "none", "retention_weight": float(settings.retention_weight),
                "retention_top_k": int(settings.retention_top_k),
                "retention_scale": str(getattr(settings, "retention_scale", "annealed")),
                "retention_positions": str(getattr(settings, "retention_positions", "newest")),
                "retention_min_share": float(getattr(settings, "retention_min_share",
                                                     DEFAULT_RETENTION_MIN_SHARE)),
                "first_task_replay_weight": float(getattr(settings, "first_task_replay_weight",
                                                          DEFAULT_FIRST_TASK_REPLAY_WEIGHT))}
