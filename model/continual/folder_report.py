"""What a continual folder says about itself: a task's manifest entry and the ``--list`` table."""

import numpy as np

from model.continual.continual_state import get_owners
from model.continual.kernel_ownership import owner_shares
from model.layers.task_embedding_mask_adapter import (
    mask_adapters,
    soft_masks,
    task_table_parameters,
)
from model.methods.method import parameter_count

# A channel counts as open for a task where its served mask exceeds this.
OPEN_MASK = 0.5


def kernel_shapes(manifest):
    """Shapes of the convolution kernels of the manifest's architecture, in owner order."""
    channels, width = int(manifest["model_dim"]), int(manifest["kernel_size"])
    return [(width, channels, channels)] * (2 * len(manifest["dilations"]))


def kernel_layer_names(manifest):
    """``block_<i>/conv_<u>`` of each kernel, in owner order."""
    return [f"block_{index}/conv_{unit}" for index in range(len(manifest["dilations"]))
            for unit in (1, 2)]


def task_entry(task, description, metrics, report, model, label_source, labels_path, split, date):
    """The manifest entry of a task just learned into ``model``.

    Records the task, where its labels came from (in words, and the label
    table read, for the task and for its user split; "" if none), its
    test metrics, the share of the kernel weights it owns and what it adds to
    the folder (its head, and one mask bit per kernel weight where the method
    keeps masks, or the growth of the task tables where it keeps those;
    None where it keeps none).
    """
    index = description["task_index"]
    owners = get_owners(model.encoder)
    weights = sum(owner.size for owner in owners)
    owned = sum(int(np.count_nonzero(owner == index)) for owner in owners)
    free = sum(int(np.count_nonzero(owner == 0)) for owner in owners)
    return {
        "name": task.name, "kind": task.kind, "label_source": label_source,
        "labels_path": labels_path, "split": split,
        "headline": task.headline, "test_metrics": metrics,
        "test_users": len(task.test.sequences), "train_users": len(task.train.sequences),
        "mask_share": owned / weights if weights else None,
        "free_share_after": free / weights if weights else None,
        "stored_parameters": parameter_count(model.head.weights) + table_growth(model, index),
        "head_parameters": parameter_count(model.head.weights),
        "backbone_parameters": parameter_count(model.encoder.backbone_variables()),
        "stored_mask_bits": weights, "training": report, "date": date,
        "description": description,
    }


def table_growth(model, index):
    """Numbers the task tables grow by when a model of ``index - 1`` tasks gets task ``index``."""
    return sum(task_table_parameters(index, adapter.channels)
               - (task_table_parameters(index - 1, adapter.channels) if index > 1 else 0)
               for adapter in mask_adapters(model.encoder))


def open_channels(tables, count, s_max):
    """[tasks][layers] share of channels whose served mask exceeds ``OPEN_MASK``.

    ``tables``: ``ContinualState.task_tables`` (three per block).
    """
    shares = [[] for _ in range(count)]
    for embeddings, relation, bias in zip(tables[0::3], tables[1::3], tables[2::3]):
        masks = np.asarray(soft_masks(embeddings, relation, bias, s_max))
        for task in range(count):
            for unit in range(masks.shape[1]):
                shares[task].append(float(np.mean(masks[task, unit] > OPEN_MASK)))
    return shares


def render_listing(folder, state):
    """The text ``--list`` prints: the tasks, then each layer's capacity by task and free."""
    manifest = state.manifest
    lines = [f"{folder}: {manifest['method']} on a {manifest['model']} backbone "
             f"(model_dim {manifest['model_dim']}, {len(manifest['dilations'])} blocks) from "
             f"{manifest['pretrained_checkpoint']}; {len(state.tasks)} task(s)"]
    if state.tasks:
        lines.append(f"  {'#':>2}  {'task':<14} {'kind':<15} {'test headline':<22} "
                     f"{'mask':>6}  {'stored params':>13}  learned")
    for index, entry in enumerate(state.tasks, start=1):
        value = entry["test_metrics"].get(entry["headline"])
        headline = f"{entry['headline']} {value:.4f}" if value is not None else entry["headline"]
        mask = "-" if entry["mask_share"] is None else f"{entry['mask_share']:.1%}"
        lines.append(f"  {index:>2}  {entry['name']:<14} {entry['kind']:<15} {headline:<22} "
                     f"{mask:>6}  {entry['stored_parameters']:>13,}  {entry['date']}")
    if state.owners:
        count = len(state.tasks)
        lines.append("capacity per layer: share of the kernel owned by each task, and free")
        lines.append(f"  {'layer':<16} " + " ".join(f"{f'T{t}':>6}" for t in range(1, count + 1))
                     + f" {'free':>6}")
        for name, owner in zip(kernel_layer_names(manifest), state.owners):
            owned, free = owner_shares(owner, count)
            lines.append(f"  {name:<16} " + " ".join(f"{share:>6.1%}" for share in owned)
                         + f" {free:>6.1%}")
    if state.task_tables:
        count = len(state.tasks)
        s_max = manifest["s_max"]
        lines.append(f"open channels per layer: share of each layer's channels whose mask "
                     f"exceeds {OPEN_MASK} at s_max {s_max:g}, by task")
        lines.append(f"  {'layer':<16} " + " ".join(f"{f'T{t}':>6}" for t in range(1, count + 1)))
        shares = open_channels(state.task_tables, count, s_max)
        for layer, name in enumerate(kernel_layer_names(manifest)):
            lines.append(f"  {name:<16} " + " ".join(f"{shares[t][layer]:>6.1%}"
                                                     for t in range(count)))
    return "\n".join(lines)


def render_scores(state, scores):
    """The text ``--evaluate`` prints: each task's headline now, beside its score when it was learned."""
    lines = [f"  {'#':>2}  {'task':<14} {'headline':<14} {'when learned':>12} {'now':>8} "
             f"{'change':>8}"]
    for index, entry in enumerate(state.tasks, start=1):
        learned = entry["test_metrics"][entry["headline"]]
        now = scores[entry["name"]][entry["headline"]]
        lines.append(f"  {index:>2}  {entry['name']:<14} {entry['headline']:<14} {learned:>12.4f} "
                     f"{now:>8.4f} {now - learned:>+8.4f}")
    return "\n".join(lines)
