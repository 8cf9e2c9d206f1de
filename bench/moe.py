"""Train-step cost and parameters of the SUPERMOE encoder as the number of experts grows.

    python bench/moe.py                                  # 1..64 experts, sparse and dense, k = 2
    python bench/moe.py --experts=1,8,64 --dispatches=sparse --steps=3
    python bench/moe.py --memory_items=1000000           # also: one step at a 1M-item catalogue

Each configuration runs in a fresh subprocess (so peak memory does not mix):
it builds a ``SupermoeEncoder`` (``model/supermoe``) with an ``ItemSoftmax``
head, makes synthetic next-item batches (``--batch_size`` users x
``--length`` items, ids drawn Zipf-like over the catalogue), and times one
training step under ``tf.function``: forward, next-item loss at every
position (full softmax, or sampled with ``--num_sampled``) plus the
load-balancing (1e-2) and router z-loss (1e-3) terms, backward, Adam
(``--warmup`` untimed steps, then the median of ``--steps``).

Reported per configuration: median step seconds, parameters (all, and in
the experts), the share of tokens dropped by capacity, and peak RSS
(``ru_maxrss`` of the subprocess). Across configurations: each step time
over the 1-expert step of the same dispatch (the issue's goal: sparse
<= 1.3x at 64 experts), and dense over sparse at each expert count.
``--memory_items`` adds one sparse run at that catalogue size with a
sampled softmax, where the item tables dominate memory (SUPERMOE's
abstract says so of user models); the full softmax's logits at that size
are given as arithmetic, since they do not fit.

``--report`` writes the tables as Markdown (``bench/results/moe.md``).
"""

import argparse
import json
import os
import resource
import subprocess
import sys

from common import median_seconds, print_table, run_description  # also sets up sys.path

from util.atomic import write_text_atomically

GOAL_STEP_RATIO = 1.3
LOAD_BALANCING_WEIGHT = 1e-2
ROUTER_Z_WEIGHT = 1e-3


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--experts", default="1,2,4,8,16,32,64",
                        help="comma-separated expert counts, one configuration each")
    parser.add_argument("--dispatches", default="sparse,dense",
                        help="comma-separated: sparse (ours) and/or dense (every expert on "
                             "every token, as keras-hub's MoE blocks)")
    parser.add_argument("--experts_per_token", type=int, default=2,
                        help="k (a configuration with fewer experts routes to all of them)")
    parser.add_argument("--capacity_factor", type=float, default=1.25,
                        help="training slots per expert relative to an even share")
    parser.add_argument("--batch_size", type=int, default=128, help="users per batch")
    parser.add_argument("--length", type=int, default=50, help="items per user")
    parser.add_argument("--model_dim", type=int, default=64, help="width of the states")
    parser.add_argument("--hidden_dim", type=int, default=256, help="width inside each expert")
    parser.add_argument("--num_blocks", type=int, default=2, help="transformer blocks")
    parser.add_argument("--num_heads", type=int, default=2, help="attention heads")
    parser.add_argument("--num_items", type=int, default=3_400,
                        help="catalogue size (ML-1M has about 3,400 rated items)")
    parser.add_argument("--num_sampled", type=int, default=0,
                        help="0: full softmax; N: sampled softmax with N negatives")
    parser.add_argument("--memory_items", type=int, default=0,
                        help="also run one sparse configuration at this catalogue size "
                             "(sampled softmax, --memory_sampled negatives); 0: skip")
    parser.add_argument("--memory_sampled", type=int, default=1_000,
                        help="sampled-softmax negatives of the --memory_items run")
    parser.add_argument("--memory_experts", type=int, default=8,
                        help="experts of the --memory_items run")
    parser.add_argument("--items", choices=("uniform", "zipf"), default="uniform",
                        help="item ids of the synthetic batches: uniform (tokens spread over "
                             "the experts, so the timing compares equal work) or zipf "
                             "(popular items, as real logs; an untrained router then crowds "
                             "experts and capacity drops many tokens)")
    parser.add_argument("--router_stddev", type=float, default=0.02,
                        help="standard deviation of the routers' initial weights")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    parser.add_argument("--report", default="", help="Markdown report to write; empty: none")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    flags = parser.parse_args(argv)
    flags.expert_counts = [int(value) for value in flags.experts.split(",") if value.strip()]
    flags.dispatch_list = [value.strip() for value in flags.dispatches.split(",") if value.strip()]
    unknown = sorted(set(flags.dispatch_list) - {"sparse", "dense"})
    if unknown:
        parser.error(f"--dispatches: unknown {', '.join(unknown)}; use sparse and/or dense")
    if any(count < 1 for count in flags.expert_counts):
        parser.error("--experts: every count must be at least 1")
    return flags


def peak_rss_gb():
    """This process's peak resident memory so far, in GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_worker(flags, dispatch, num_experts, num_items, num_sampled):
    """Everything measured for one configuration; returns a JSON-able dict."""
    import keras
    import numpy as np
    import tensorflow as tf

    from contracts import schema
    from model.nextitnet.item_prediction_loss import item_prediction_loss
    from model.nextitnet.item_softmax import ItemSoftmax
    from model.supermoe import SupermoeEncoder

    keras.utils.set_random_seed(flags.seed)
    rng = np.random.default_rng(flags.seed)
    real_items = num_items - schema.FIRST_ITEM_ID
    shape = (2, flags.batch_size, flags.length)
    # Zipf-like popularity: item ids are indexed by descending frequency, as the tables are.
    ranks = (np.minimum(rng.zipf(1.2, size=shape), real_items) if flags.items == "zipf"
             else rng.integers(1, real_items + 1, size=shape))
    batches = [tf.constant(schema.FIRST_ITEM_ID + rank - 1, tf.int32) for rank in ranks]
    encoder = SupermoeEncoder(
        num_items, flags.model_dim, flags.num_blocks, flags.num_heads, num_experts,
        min(flags.experts_per_token, num_experts), hidden_dim=flags.hidden_dim,
        capacity_factor=flags.capacity_factor, dispatch=dispatch, max_length=flags.length)
    head = ItemSoftmax(num_items)
    encoder(batches[0][:1])
    for block in encoder.blocks:
        router = block.experts.router_kernel
        router.assign(rng.normal(0.0, flags.router_stddev, router.shape).astype("float32"))
    head.build((None, flags.model_dim))
    variables = encoder.trainable_variables + head.trainable_variables
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(variables)
    built_rss = peak_rss_gb()

    @tf.function
    def train_step(items):
        with tf.GradientTape() as tape:
            hidden, statistics = encoder(items[:, :-1], training=True)
            positions = tf.reshape(hidden, [-1, flags.model_dim])
            targets = tf.reshape(items[:, 1:], [-1])
            losses = item_prediction_loss(positions, targets, tf.ones_like(targets, tf.float32),
                                          head, num_sampled=num_sampled, training=True)
            loss = (tf.reduce_mean(losses)
                    + LOAD_BALANCING_WEIGHT * statistics["load_balancing_loss"]
                    + ROUTER_Z_WEIGHT * statistics["router_z_loss"])
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, statistics["dropped_fraction"]

    index = [0]
    dropped = []

    def step():
        loss, dropped_fraction = train_step(batches[index[0] % 2])
        index[0] += 1
        dropped.append(float(dropped_fraction))
        return float(loss)

    for _ in range(flags.warmup):
        step()
    step_s, times = median_seconds(step, flags.steps)
    expert_parameters = sum(int(np.prod(v.shape)) for block in encoder.blocks
                            for v in block.experts.trainable_variables)
    table_parameters = (int(np.prod(encoder.item_embedding.embeddings.shape))
                        + sum(int(np.prod(v.shape)) for v in head.trainable_variables))
    return {"dispatch": dispatch, "experts": num_experts, "num_items": num_items,
            "num_sampled": num_sampled, "step_s": step_s, "step_times_s": times,
            "parameters": sum(int(np.prod(v.shape)) for v in variables),
            "expert_parameters": expert_parameters, "table_parameters": table_parameters,
            "dropped_fraction": float(np.mean(dropped)), "peak_rss_built_gb": built_rss,
            "peak_rss_gb": peak_rss_gb()}


# ---------------------------------------------------------------- parent side

def run_configuration(argv, dispatch, experts, num_items, num_sampled):
    """Runs one configuration in a fresh Python process; returns its result dict."""
    worker = f"{dispatch}:{experts}:{num_items}:{num_sampled}"
    command = [sys.executable, os.path.abspath(__file__), *argv, f"--worker={worker}"]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.stderr.write(finished.stderr[-4000:])
        raise SystemExit(f"the worker for {worker} failed (exit {finished.returncode})")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def scaling_rows(results):
    """Table rows of the expert sweep, with each step over its dispatch's 1-expert step."""
    base = {r["dispatch"]: r["step_s"] for r in results if r["experts"] == min(
        x["experts"] for x in results if x["dispatch"] == r["dispatch"])}
    sparse = {r["experts"]: r["step_s"] for r in results if r["dispatch"] == "sparse"}
    rows = []
    for r in results:
        dense_over_sparse = (f"{r['step_s'] / sparse[r['experts']]:.2f}"
                             if r["dispatch"] == "dense" and r["experts"] in sparse else "")
        rows.append([r["dispatch"], r["experts"], f"{r['parameters']:,}",
                     f"{r['expert_parameters']:,}", f"{r['step_s']:.3f}",
                     f"{r['step_s'] / base[r['dispatch']]:.2f}", dense_over_sparse,
                     f"{r['dropped_fraction']:.3f}", f"{r['peak_rss_gb']:.2f}"])
    return rows


HEADER = ["dispatch", "experts", "parameters", "in experts", "step s", "x 1 expert",
          "dense / sparse", "dropped", "peak RSS GB"]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = parse_flags(argv)
    if flags.worker is not None:
        dispatch, experts, num_items, num_sampled = flags.worker.split(":")
        print(json.dumps(run_worker(flags, dispatch, int(experts), int(num_items),
                                    int(num_sampled))), flush=True)
        return 0

    results = []
    for dispatch in flags.dispatch_list:
        for experts in flags.expert_counts:
            print(f"running {dispatch} dispatch, {experts} experts ...", flush=True)
            results.append(run_configuration(argv, dispatch, experts, flags.num_items,
                                             flags.num_sampled))
    rows = scaling_rows(results)
    print_table(HEADER, rows)
    goal_lines = []
    sparse = sorted((r for r in results if r["dispatch"] == "sparse"), key=lambda r: r["experts"])
    if len(sparse) > 1:
        ratio = sparse[-1]["step_s"] / sparse[0]["step_s"]
        goal_lines.append(
            f"sparse step at {sparse[-1]['experts']} experts / at {sparse[0]['experts']}: "
            f"{ratio:.2f} (goal <= {GOAL_STEP_RATIO}: "
            f"{'holds' if ratio <= GOAL_STEP_RATIO else 'does not hold'})")
        per_expert = [(b["expert_parameters"] - a["expert_parameters"]) / (b["experts"] - a["experts"])
                      for a, b in zip(sparse, sparse[1:])]
        linear = max(per_expert) - min(per_expert) <= 1e-6 * max(per_expert)
        goal_lines.append(f"expert parameters grow by {per_expert[0]:,.0f} per expert "
                          f"({'linearly' if linear else 'not linearly'})")
    goal_lines.append(
        "every expert slot is computed whether a token filled it or not, so a dropped token "
        "saves no work and the step times compare equal work; 'dropped' is the share of "
        "assignments an untrained router sent past capacity on these batches (training's "
        "load-balancing loss is there to lower it: TensorBoard router/dropped_fraction)")
    memory = None
    if flags.memory_items:
        print(f"running sparse dispatch at {flags.memory_items:,} items ...", flush=True)
        memory = run_configuration(argv, "sparse", flags.memory_experts, flags.memory_items,
                                   flags.memory_sampled)
        logits_gb = flags.batch_size * (flags.length - 1) * flags.memory_items * 4 / 1e9
        goal_lines.append(
            f"{flags.memory_items:,} items, {flags.memory_experts} experts, sampled softmax "
            f"({flags.memory_sampled:,} negatives): step {memory['step_s']:.3f} s, "
            f"{memory['parameters']:,} parameters of which {memory['table_parameters']:,} "
            f"({memory['table_parameters'] / memory['parameters']:.1%}) in the item embedding "
            f"and softmax tables, {memory['expert_parameters']:,} in the experts; peak RSS "
            f"{memory['peak_rss_gb']:.2f} GB ({memory['peak_rss_built_gb']:.2f} GB after "
            f"building weights and Adam slots). A full softmax would need "
            f"{logits_gb:,.1f} GB for one batch's float32 logits alone")
    for line in goal_lines:
        print(line)
    if flags.report:
        seconds = {f"{r['dispatch']} {r['experts']}": r["step_s"] * (flags.steps + flags.warmup)
                   for r in results}
        lines = [
            "# SUPERMOE encoder: train-step cost as the experts grow",
            "",
            f"`python bench/moe.py {' '.join(argv)}`".replace(" `", "`"),
            "",
            run_description(seconds).split(";")[0] + ".",
            "",
            f"Batch {flags.batch_size} users x {flags.length} items, {flags.num_blocks} blocks, "
            f"width {flags.model_dim}, experts {flags.hidden_dim} wide, k = "
            f"{flags.experts_per_token}, capacity factor {flags.capacity_factor}, "
            f"{flags.num_items:,} items ({'full softmax' if not flags.num_sampled else f'{flags.num_sampled} sampled'}), "
            f"{flags.items} item ids, routers initialised N(0, {flags.router_stddev}); "
            f"median of {flags.steps} steps after {flags.warmup} warm-up steps, one subprocess "
            f"per row.",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER),
            *["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows],
            "",
            *[f"- {line}" for line in goal_lines],
            "",
        ]
        write_text_atomically(flags.report, "\n".join(lines))
        print(f"wrote {flags.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
