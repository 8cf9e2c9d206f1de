"""Train-step cost against history length, at SUMN's paper shapes by default.

    python bench/train.py                                   # 50 vs 900 behaviours, paper shapes
    python bench/train.py --behaviours=50,300,900 --pooling=gruhop
    python bench/train.py --num_vocabulary=20000 --steps=3 --json   # smaller, quicker
    python bench/train.py --num_sampled=8192                # SUMN's sampled-softmax decoder

For every ``--behaviours`` value a fresh subprocess (so peak memory does not
mix between configurations) builds the model through the SUMN family's
registration (``model/registry.py``) and the optimizer with
``model.training.optimizer.build_optimizer`` (``FusedAdam``, or
Keras Adam with ``--optimizer=adam``), makes synthetic batches in the
loader's format (every user has exactly that many behaviours; each
behaviour 1..``--max_words`` words, uniformly, ids drawn from a Zipf-like
distribution over the vocabulary; ``--target_length`` distinct target words
per user), and times ``SumnTrainer.train_step`` under the default strategy
(``--warmup`` untimed steps, then the median of ``--steps``). In the same
process it times the two halves of the model alone, forward + backward, by
the routes the trainer takes: encoder (``SumnModel.training_user_vectors``:
word means, then behaviour projection + pooling in recomputed chunks, from
the ragged history) and decoder (``decoder.consistency_loss``: MLP +
full-vocabulary softmax cross-entropy fused hop by hop, or with
``--num_sampled`` the sampled softmax, from fixed user vectors), and
measures dense matmul FLOP/s (the best of ``tf.matmul`` on [B*hops, mlp] x
[mlp, vocabulary] and 4096 x model_dim x model_dim).

Reported per configuration: median step seconds, examples/s, the split,
peak RSS (``ru_maxrss`` of the subprocess), the model FLOPs of a step
(``model.sumn.flops.sumn_training_flops``) and MFU = model FLOPs per second /
matmul FLOP/s. Across configurations: step(first) / step(last), the
issue's goal being <= 0.25 for 50 vs 900 behaviours.
"""

import argparse
import json
import os
import resource
import subprocess
import sys

from common import median_seconds, print_json, print_table  # also sets up sys.path and quiets TensorFlow

GOAL_RATIO = 0.25
GOAL_PEAK_GB = 4.0
GOAL_MFU = 0.5


def parse_flags(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--behaviours", default="50,900",
                        help="comma-separated behaviours per user, one configuration each")
    parser.add_argument("--batch_size", type=int, default=128, help="users per batch")
    parser.add_argument("--max_words", type=int, default=24,
                        help="words per behaviour are uniform in 1..max_words (SUMN: 24)")
    parser.add_argument("--target_length", type=int, default=500, help="target words per user")
    parser.add_argument("--num_vocabulary", type=int, default=178_422, help="vocabulary size")
    parser.add_argument("--model_dim", type=int, default=256, help="behaviour/user vector width")
    parser.add_argument("--word_emb_dim", type=int, default=256, help="word embedding width")
    parser.add_argument("--mlp_layers", default="512", help="decoder hidden widths, comma-separated")
    parser.add_argument("--num_hops", type=int, default=5, help="hops of mhop / gruhop")
    parser.add_argument("--pooling", default="mhop", choices=("max", "mean", "mhop", "gruhop"),
                        help="pooling strategy")
    parser.add_argument("--num_sampled", type=int, default=0,
                        help="0: the exact loss over every word; N: the sampled softmax with N "
                             "log-uniform negatives per step (main/train.py --num_sampled)")
    parser.add_argument("--mixed_precision", default="none",
                        choices=("none", "mixed_float16", "mixed_bfloat16"),
                        help="Keras dtype policy (the matmul peak is measured in its compute dtype)")
    parser.add_argument("--optimizer", default="fused_adam", choices=("fused_adam", "adam"),
                        help="fused_adam: what main/train.py trains with "
                             "(model.training.fused_adam.FusedAdam); adam: keras.optimizers.Adam")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--no_split", action="store_true",
                        help="skip timing the encoder and decoder halves alone")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic batches")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    flags = parser.parse_args(argv)
    flags.behaviour_counts = [int(value) for value in flags.behaviours.split(",") if value.strip()]
    flags.mlp = [int(value) for value in flags.mlp_layers.split(",") if value.strip()]
    return flags


# ---------------------------------------------------------------- worker side

def synthetic_batch(flags, behaviours, rng):
    """A batch dict in the loader's format (data_loader/batch_format.py)."""
    import numpy as np
    import tensorflow as tf

    from contracts import schema
    from data_loader.batch_format import TARGET_WEIGHTS

    users = flags.batch_size
    words_per_behaviour = rng.integers(1, flags.max_words + 1, size=users * behaviours)
    num_words = int(words_per_behaviour.sum())
    # Zipf-like ids: log-uniform ranks, so a few words are frequent and most are rare.
    first = schema.FIRST_WORD_ID
    ranks = np.exp(rng.random(num_words) * np.log(flags.num_vocabulary - first))
    word_ids = (first + ranks.astype(np.int64) - 1).clip(first, flags.num_vocabulary - 1)
    history = tf.RaggedTensor.from_nested_row_lengths(
        tf.constant(word_ids, tf.int32),
        [tf.constant(np.full(users, behaviours), tf.int64), tf.constant(words_per_behaviour, tf.int64)],
        validate=False)
    targets = np.stack([rng.choice(np.arange(first, flags.num_vocabulary), flags.target_length,
                                   replace=False) for _ in range(users)]).astype(np.int32)
    target_words = tf.RaggedTensor.from_tensor(tf.constant(targets))
    return {
        schema.ID: tf.constant([f"user{index}" for index in range(users)]),
        schema.HISTORY: history,
        schema.HISTORY_LENGTH: tf.fill([users], behaviours),
        schema.TARGET_WORDS: target_words,
        TARGET_WEIGHTS: tf.RaggedTensor.from_tensor(
            tf.fill([users, flags.target_length], 1.0 / flags.target_length)),
    }, num_words


def timed(run, warmup, repeats):
    """Median seconds of ``run()`` (which must block until its work is done) after warm-up."""
    for _ in range(warmup):
        run()
    return median_seconds(run, repeats)


def matmul_flops_per_second(flags, dtype):
    """Best dense matmul FLOP/s of this process on the model's representative shapes."""
    import tensorflow as tf

    hops = flags.num_hops if flags.pooling in ("mhop", "gruhop") else 1
    shapes = [(4096, flags.model_dim, flags.model_dim),
              (flags.batch_size * hops, flags.mlp[-1] if flags.mlp else flags.model_dim,
               flags.num_vocabulary)]
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
    best = {}
    for m, k, n in shapes:
        a = tf.cast(tf.random.normal([m, k]), dtype)
        b = tf.cast(tf.random.normal([k, n]), dtype)
        seconds, _ = timed(lambda: float(matmul(a, b)), warmup=1, repeats=3)
        best[f"{m}x{k}x{n}"] = 2.0 * m * k * n / seconds
    return max(best.values()), best


def peak_rss_gb():
    """This process's peak resident memory so far, in GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_worker(flags, behaviours):
    """Everything measured for one configuration; returns a JSON-able dict."""
    import keras
    import numpy as np
    import tensorflow as tf

    from contracts import schema
    from model.sumn.flops import sumn_training_flops
    from model.sumn.model_inputs import history_to_model_inputs
    from model import registry
    from model.training.fused_adam import FusedAdam
    from model.training.optimizer import build_optimizer
    from model.sumn.sumn_trainer import SumnTrainer, dense_targets

    keras.utils.set_random_seed(flags.seed)
    if flags.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(flags.mixed_precision)
    rng = np.random.default_rng(flags.seed + behaviours)
    batches, word_counts = zip(*(synthetic_batch(flags, behaviours, rng) for _ in range(2)))

    strategy = tf.distribute.get_strategy()
    run_config = {"model": "sumn", "num_vocabulary": flags.num_vocabulary,
                  "word_emb_dim": flags.word_emb_dim, "model_dim": flags.model_dim,
                  "pooling": flags.pooling, "num_hops": flags.num_hops, "mlp_layers": flags.mlp,
                  "dropout_rate": 0.1}
    family = registry.family_of(run_config)
    model = family.build(family.config_from(run_config))
    optimizer_class = {"fused_adam": FusedAdam, "adam": keras.optimizers.Adam}[flags.optimizer]
    optimizer = build_optimizer(1e-3, flags.mixed_precision, model.trainable_variables,
                                optimizer_class=optimizer_class)
    trainer = SumnTrainer(model, optimizer, strategy, num_sampled=flags.num_sampled)
    built_rss = peak_rss_gb()  # batches, weights and Adam slots, before any step

    step_index = [0]

    def train_step():
        batch = batches[step_index[0] % len(batches)]
        step_index[0] += 1
        return float(trainer.train_step(batch)["loss"])

    step_s, step_times = timed(train_step, flags.warmup, flags.steps)
    result = {"behaviours": behaviours, "step_s": step_s, "step_times_s": step_times,
              "peak_rss_built_gb": built_rss, "peak_rss_gb": peak_rss_gb(),
              "examples_per_s": flags.batch_size / step_s,
              "optimizer": type(getattr(optimizer, "inner_optimizer", optimizer)).__name__,
              "words_per_batch": float(np.mean(word_counts))}

    if not flags.no_split:
        encoder_variables = [variable for layer in model.encoder_layers.values()
                             for variable in layer.trainable_variables]
        decoder_variables = model.decoder.trainable_variables

        @tf.function(reduce_retracing=True)
        def encoder_pass(history):
            inputs = history_to_model_inputs(history)
            with tf.GradientTape() as tape:
                user_vectors = model.training_user_vectors(inputs)
                loss = tf.reduce_mean(tf.square(tf.cast(user_vectors, tf.float32)))
            return tf.linalg.global_norm(tape.gradient(loss, encoder_variables))

        hops = model.num_hops
        user_vectors = tf.random.normal([flags.batch_size, hops, flags.model_dim])

        loss_weights = tf.fill([flags.batch_size, hops], 1.0 / (flags.batch_size * hops))

        @tf.function(reduce_retracing=True)
        def decoder_pass(batch):
            target_words, target_weights = dense_targets(batch)
            with tf.GradientTape() as tape:
                loss, _ = model.decoder.consistency_loss(
                    user_vectors, target_words, target_weights, loss_weights, training=True,
                    num_sampled=flags.num_sampled)
            return tf.linalg.global_norm(tape.gradient(loss, decoder_variables))

        result["encoder_s"], _ = timed(lambda: float(encoder_pass(batches[0][schema.HISTORY])),
                                       flags.warmup, flags.steps)
        result["decoder_s"], _ = timed(lambda: float(decoder_pass(batches[0])), flags.warmup, flags.steps)
        result["rest_s"] = step_s - result["encoder_s"] - result["decoder_s"]

    flops = sumn_training_flops(
        batch_size=flags.batch_size, num_words=int(np.mean(word_counts)),
        num_behaviours_padded=behaviours, num_behaviours=flags.batch_size * behaviours,
        word_emb_dim=flags.word_emb_dim,
        model_dim=flags.model_dim, mlp_layers=flags.mlp, vocabulary_size=flags.num_vocabulary,
        pooling=flags.pooling, num_hops=flags.num_hops,
        decoder_columns=flags.target_length + flags.num_sampled if flags.num_sampled else None)
    compute_dtype = keras.mixed_precision.global_policy().compute_dtype
    peak, per_shape = matmul_flops_per_second(flags, compute_dtype)
    result.update({
        "model_flops": flops,
        "model_flops_per_s": flops / step_s,
        "matmul_flops_per_s": peak,
        "matmul_flops_per_s_by_shape": per_shape,
        "mfu": flops / step_s / peak,
        "compute_dtype": compute_dtype,
        "peak_rss_whole_run_gb": peak_rss_gb(),  # also the halves and the matmul probe
    })
    return result


# ---------------------------------------------------------------- parent side

def run_configuration(flags, argv, behaviours):
    """Runs one configuration in a fresh Python process; returns its result dict."""
    command = [sys.executable, os.path.abspath(__file__), *argv, f"--worker={behaviours}"]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.stderr.write(finished.stderr[-4000:])
        raise SystemExit(f"the worker for {behaviours} behaviours failed (exit {finished.returncode})")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = parse_flags(argv)
    if flags.worker is not None:
        print(json.dumps(run_worker(flags, flags.worker)), flush=True)
        return 0

    results = []
    for behaviours in flags.behaviour_counts:
        if not flags.json:
            print(f"running {behaviours} behaviours per user ...", flush=True)
        results.append(run_configuration(flags, argv, behaviours))
    summary = {
        "goal_step_ratio": GOAL_RATIO, "goal_peak_rss_gb": GOAL_PEAK_GB, "goal_mfu": GOAL_MFU,
        "peak_rss_gb": max(result["peak_rss_gb"] for result in results),
    }
    if len(results) > 1:
        first, last = results[0], results[-1]
        summary["step_ratio"] = first["step_s"] / last["step_s"]
        if "encoder_s" in first:
            summary["encoder_ratio"] = first["encoder_s"] / last["encoder_s"]
    payload = {"flags": {key: value for key, value in vars(flags).items() if key != "worker"},
               "results": results, "summary": summary}
    if flags.json:
        print_json(payload)
        return 0

    print(f"pooling {flags.pooling}, batch {flags.batch_size}, vocabulary {flags.num_vocabulary:,}, "
          f"model_dim {flags.model_dim}, word_emb_dim {flags.word_emb_dim}, mlp {flags.mlp_layers}, "
          f"{flags.num_hops} hops, words/behaviour 1..{flags.max_words}, {flags.mixed_precision}, "
          f"{'sampled softmax of %d negatives' % flags.num_sampled if flags.num_sampled else 'full softmax'}, "
          f"optimizer {results[0]['optimizer']}")
    split = not flags.no_split
    header = ["behaviours", "words/batch", "step s", "examples/s"]
    header += ["encoder f+b s", "decoder f+b s", "rest s"] if split else []
    header += ["model GFLOP", "matmul GFLOP/s", "MFU", "RSS built GB", "peak RSS GB"]
    rows = []
    for result in results:
        row = [result["behaviours"], f"{result['words_per_batch']:,.0f}", f"{result['step_s']:.3f}",
               f"{result['examples_per_s']:.1f}"]
        if split:
            row += [f"{result['encoder_s']:.3f}", f"{result['decoder_s']:.3f}", f"{result['rest_s']:.3f}"]
        row += [f"{result['model_flops'] / 1e9:,.1f}", f"{result['matmul_flops_per_s'] / 1e9:.1f}",
                f"{result['mfu']:.2f}", f"{result['peak_rss_built_gb']:.2f}",
                f"{result['peak_rss_gb']:.2f}"]
        rows.append(row)
    print_table(header, rows)
    if "step_ratio" in summary:
        line = (f"step({results[0]['behaviours']}) / step({results[-1]['behaviours']}) = "
                f"{summary['step_ratio']:.2f} (goal <= {GOAL_RATIO})")
        if "encoder_ratio" in summary:
            line += f"; encoder alone {summary['encoder_ratio']:.2f}"
        print(line)
    print(f"peak RSS {summary['peak_rss_gb']:.2f} GB (goal <= {GOAL_PEAK_GB}); "
          f"MFU goal >= {GOAL_MFU}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
