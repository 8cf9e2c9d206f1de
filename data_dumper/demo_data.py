"""Synthetic behaviour logs with planted user traits: the demo data set.

The generative story (every draw from one ``numpy`` generator seeded by ``--seed``,
so a seed always gives the same log):

1. Topics. There are 12 topics (``cooking``, ``travel``, ...), each with 10 topic
   words (``cooking_0`` .. ``cooking_9``, Zipf-like frequencies), plus 30 filler
   words (``common_0`` ..) that carry no topic.
2. Items. Every item has a primary topic (topics dealt round robin, so each has
   items) and 3-6 words: mostly words of its primary topic, some of one random
   secondary topic, some fillers. Its id token ``item:<id>`` is added by the
   table builder. Within a topic, items have Zipf-like popularity.
3. Users and traits. Each user draws three latent traits:
     segment    2 classes, P = (0.5, 0.5)
     age_group  3 classes, P = (0.3, 0.45, 0.25)
     interest   4 classes, P = uniform
   Each class of each trait has a fixed random preference vector over topics.
   A user's topic logits are
     log(topic popularity) + 0.45 * pref_segment + 0.45 * pref_age_group
                           + 0.55 * pref_interest + 0.9 * per-user noise,
   so traits shift consumption clearly but each user also has idiosyncratic
   tastes (noise and popularity keep a probe well below perfect).
4. Behaviours. A user's history length is log-uniform in 10..200. Each
   behaviour draws a topic from the user's softmax mixture, then an item of that
   topic by popularity; 10% of behaviours are instead a uniformly random item
   (exploration noise). The order column is the behaviour's position.

The labels (``labels.parquet``) are the traits: ``id`` (string), ``segment``,
``age_group``, ``interest`` (int32 class indices). A bag-of-items linear probe
recovers ``segment`` clearly above chance but not perfectly (about 0.85 AUC with
the whole history as features; tests/test_demo_data.py checks it).
All sampling is vectorised numpy: no loop over users or events.
"""

import numpy as np
import pyarrow as pa

from data_dumper import behaviour_log

TOPICS = (
    "cooking", "travel", "fitness", "finance", "gaming", "music",
    "fashion", "parenting", "gadgets", "pets", "gardening", "cinema",
)
WORDS_PER_TOPIC = 10
NUM_FILLER_WORDS = 30

# Trait name -> class probabilities.
TRAITS = {
    "segment": (0.5, 0.5),
    "age_group": (0.3, 0.45, 0.25),
    "interest": (0.25, 0.25, 0.25, 0.25),
}
# How strongly each trait moves a user's topic logits; noise is the per-user part.
TRAIT_STRENGTH = {"segment": 0.45, "age_group": 0.45, "interest": 0.55}
USER_NOISE = 0.9
EXPLORATION = 0.1

MIN_HISTORY = 10
MAX_HISTORY = 200
WORDS_PER_ITEM = (3, 6)

DEFAULT_USERS = 3000
DEFAULT_ITEMS = 400
DEFAULT_SEED = 7


def _zipf_weights(rng, count, exponent):
    """Zipf-like weights 1/(rank+1)^exponent in a random rank order, summing to one."""
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    weights = weights[rng.permutation(count)]
    return weights / weights.sum()


def _topic_words():
    return np.array(
        [f"{topic}_{index}" for topic in TOPICS for index in range(WORDS_PER_TOPIC)]
        + [f"common_{index}" for index in range(NUM_FILLER_WORDS)]
    )


def _sample_items(rng, num_items):
    """Each item's primary topic and word list (as a pyarrow list array)."""
    num_topics = len(TOPICS)
    topic = rng.permutation(np.arange(num_items) % num_topics)
    secondary = (topic + rng.integers(1, num_topics, size=num_items)) % num_topics
    low, high = WORDS_PER_ITEM
    lengths = rng.integers(low, high + 1, size=num_items)
    word_item = np.repeat(np.arange(num_items), lengths)
    # Each word slot: 70% primary topic, 15% secondary topic, 15% filler.
    kind = rng.choice(3, size=len(word_item), p=(0.7, 0.15, 0.15))
    word_frequencies = _zipf_weights(rng, WORDS_PER_TOPIC, 1.0)
    in_topic = rng.choice(WORDS_PER_TOPIC, size=len(word_item), p=word_frequencies)
    slot_topic = np.where(kind == 1, secondary[word_item], topic[word_item])
    word_index = np.where(
        kind == 2,
        num_topics * WORDS_PER_TOPIC + rng.integers(0, NUM_FILLER_WORDS, size=len(word_item)),
        slot_topic * WORDS_PER_TOPIC + in_topic,
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    words = pa.ListArray.from_arrays(pa.array(offsets), pa.array(_topic_words()[word_index]))
    return topic, words


def _sample_traits(rng, num_users):
    return {
        name: rng.choice(len(probabilities), size=num_users, p=probabilities).astype(np.int32)
        for name, probabilities in TRAITS.items()
    }


def _user_topic_cdf(rng, traits, num_users):
    """Cumulative topic probabilities per user, shape [num_users, num_topics]."""
    num_topics = len(TOPICS)
    logits = np.log(_zipf_weights(rng, num_topics, 0.6))[None, :].repeat(num_users, axis=0)
    for name, classes in traits.items():
        preferences = rng.normal(size=(len(TRAITS[name]), num_topics))
        preferences -= preferences.mean(axis=0)  # traits shift tastes, not overall popularity
        logits += TRAIT_STRENGTH[name] * preferences[classes]
    logits += USER_NOISE * rng.normal(size=logits.shape)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return np.cumsum(probabilities, axis=1)


def _sample_events(rng, item_topic, cdf, num_users):
    """(user index, position, item index) of every behaviour."""
    num_items = len(item_topic)
    lengths = np.exp(rng.uniform(np.log(MIN_HISTORY), np.log(MAX_HISTORY + 1), size=num_users))
    lengths = np.minimum(lengths.astype(np.int64), MAX_HISTORY)
    user = np.repeat(np.arange(num_users), lengths)
    position = np.arange(len(user)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    # Topic by inverse CDF: the count of cumulative probabilities below a uniform draw.
    draw = rng.uniform(size=len(user))
    topic = np.minimum((cdf[user] < draw[:, None]).sum(axis=1), len(TOPICS) - 1)
    # Item within topic by inverse CDF too: items sorted by topic, each topic's
    # popularity CDF shifted by its topic index, so one searchsorted serves all topics.
    by_topic = np.argsort(item_topic, kind="stable")
    popularity = _zipf_weights(rng, num_items, 0.8)[by_topic]
    sorted_topic = item_topic[by_topic]
    cumulative = _within_topic_cdf(popularity, sorted_topic) + sorted_topic
    slot = np.searchsorted(cumulative, topic + rng.uniform(size=len(user)), side="right")
    item = by_topic[np.minimum(slot, num_items - 1)]
    explore = rng.uniform(size=len(user)) < EXPLORATION
    item = np.where(explore, rng.integers(0, num_items, size=len(user)), item)
    return user, position, item


def _within_topic_cdf(popularity, sorted_topic):
    """Cumulative popularity that restarts at each topic (input sorted by topic)."""
    totals = np.bincount(sorted_topic, weights=popularity)
    cumulative = np.cumsum(popularity)
    starts = np.concatenate([[0.0], np.cumsum(totals)])[sorted_topic]
    within = (cumulative - starts) / totals[sorted_topic]
    # Each topic's last item ends at exactly 1, whatever the float round-off.
    within[np.append(sorted_topic[1:] != sorted_topic[:-1], True)] = 1.0
    return within


def generate_demo(seed=DEFAULT_SEED, num_users=DEFAULT_USERS, num_items=DEFAULT_ITEMS):
    """Draws a demo data set.

    Returns:
      ``(events, items, labels)`` Arrow tables:
        events: user_id int64, position int32, item_id int64 (one row per behaviour)
        items: item_id int64, words list<string> (topic and filler words)
        labels: id string, segment / age_group / interest int32
    """
    rng = np.random.default_rng(seed)
    item_topic, item_words = _sample_items(rng, num_items)
    traits = _sample_traits(rng, num_users)
    cdf = _user_topic_cdf(rng, traits, num_users)
    user, position, item = _sample_events(rng, item_topic, cdf, num_users)
    user_ids = np.arange(1, num_users + 1, dtype=np.int64)
    item_ids = np.arange(1, num_items + 1, dtype=np.int64)
    events = pa.table(
        {
            "user_id": user_ids[user],
            "position": position.astype(np.int32),
            "item_id": item_ids[item],
        }
    )
    items = pa.table({"item_id": item_ids, "words": item_words})
    labels = pa.table(
        {"id": pa.array(user_ids.astype(str)), **{name: traits[name] for name in TRAITS}}
    )
    return events, items, labels


def load_demo(con, seed=DEFAULT_SEED, num_users=DEFAULT_USERS, num_items=DEFAULT_ITEMS):
    """Generates the demo data into ``events`` and ``item_text``; returns it with its labels."""
    events, items, labels = generate_demo(seed, num_users, num_items)
    con.register("demo_events", events)
    con.register("demo_items", items)
    con.execute(
        f"CREATE OR REPLACE TABLE {behaviour_log.EVENTS_TABLE} AS "
        f"SELECT user_id, position AS order_key, item_id FROM demo_events"
    )
    con.execute(
        f"CREATE OR REPLACE TABLE {behaviour_log.ITEM_TEXT_TABLE} AS "
        f"SELECT CAST(item_id AS VARCHAR) AS item_key, words FROM demo_items"
    )
    con.unregister("demo_events")
    con.unregister("demo_items")
    return behaviour_log.LoadedLog(
        description=f"demo data (seed {seed}, {num_users} users, {num_items} items)", labels=labels
    )
