"""Synthetic behaviour logs with planted user traits: the demo data set.

The demo exists to show what a universal user representation buys: traits
that only the *co-consumption* of items reveals, recovered from few labels.
So the data is built such that

* an item's words are drawn independently of its community, so no word
  marks a community; the community shows in which users consume the item
  together with which other items (a bag of words still tells items apart
  by their word combinations, as a bag of item ids does);
* there are many more items (2,000) than labelled users a probe trains on
  (the Makefile's demo probes with 200), so a per-item linear model such as
  TF-IDF + logistic regression has about six labelled behaviours per item
  to learn a weight from, while a self-supervised encoder learns from every
  user's whole history, labelled or not, which items go together.

The generative story (every draw from one ``numpy`` generator seeded by ``--seed``,
so a seed always gives the same log):

1. Communities. There are 20 hidden communities (``NUM_TOPICS``) with
   Zipf-like overall popularity. They have no names and no words.
2. Items. Every item belongs to one community (dealt round robin, so each
   has items) and has 2-4 title words drawn from 300 shared words
   (``word_0`` ..; Zipf-like frequencies) independently of its community.
   Its id token ``item:<id>`` is added by the table builder. Within a
   community, items have Zipf-like popularity (exponent 0.5: a long tail).
3. Users and traits. Each user draws three latent traits:
     segment    2 classes, P = (0.5, 0.5)
     age_group  3 classes, P = (0.3, 0.45, 0.25)
     interest   4 classes, P = uniform
   Each class of each trait has a fixed random preference vector over the
   communities (centred, unit root-mean-square). A user's community logits are
     log(community popularity) + 0.6 * pref_segment + 0.9 * pref_age_group
                               + 1.0 * pref_interest + 1.5 * per-user noise,
   so traits shift consumption clearly and each user also has idiosyncratic
   tastes (noise, popularity and short histories keep every probe below perfect).
4. Behaviours. A user's history length is log-uniform in 10..200. Each
   behaviour draws a community from the user's softmax mixture, then an item
   of that community by popularity; 10% of behaviours are instead a uniformly
   random item (exploration noise). The order column is the behaviour's position.

The labels (``labels.parquet``) are the traits: ``id`` (string), ``segment``,
``age_group``, ``interest`` (int32 class indices). tests/test_demo_data.py
checks the properties above: title words alone do not predict a trait, item
ids do, and a probe on each user's (true) community shares beats a
bag-of-items probe when both learn from 200 labelled users.
All sampling is vectorised numpy: no loop over users or events.
"""

import numpy as np
import pyarrow as pa

from data_dumper import behaviour_log

NUM_TOPICS = 20
NUM_TITLE_WORDS = 300
WORDS_PER_ITEM = (2, 4)
# Zipf exponents: of the communities' overall popularity, of items within a
# community, of title words.
TOPIC_POPULARITY = 0.6
ITEM_POPULARITY = 0.5
WORD_FREQUENCY = 1.0

# Trait name -> class probabilities.
TRAITS = {
    "segment": (0.5, 0.5),
    "age_group": (0.3, 0.45, 0.25),
    "interest": (0.25, 0.25, 0.25, 0.25),
}
# How strongly each trait moves a user's community logits; noise is the per-user part.
TRAIT_STRENGTH = {"segment": 0.6, "age_group": 0.9, "interest": 1.0}
USER_NOISE = 1.5
EXPLORATION = 0.1

MIN_HISTORY = 10
MAX_HISTORY = 200

DEFAULT_USERS = 3000
DEFAULT_ITEMS = 2000
DEFAULT_SEED = 7


def _zipf_weights(rng, count, exponent):
    """Zipf-like weights 1/(rank+1)^exponent in a random rank order, summing to one."""
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    weights = weights[rng.permutation(count)]
    return weights / weights.sum()


def _title_words():
    return np.array([f"word_{index}" for index in range(NUM_TITLE_WORDS)])


def _sample_items(rng, num_items):
    """Each item's community and title words (a pyarrow list array), drawn independently."""
    topic = rng.permutation(np.arange(num_items) % NUM_TOPICS)
    low, high = WORDS_PER_ITEM
    lengths = rng.integers(low, high + 1, size=num_items)
    frequencies = _zipf_weights(rng, NUM_TITLE_WORDS, WORD_FREQUENCY)
    word_index = rng.choice(NUM_TITLE_WORDS, size=int(lengths.sum()), p=frequencies)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    words = pa.ListArray.from_arrays(pa.array(offsets), pa.array(_title_words()[word_index]))
    return topic, words


def _sample_traits(rng, num_users):
    return {
        name: rng.choice(len(probabilities), size=num_users, p=probabilities).astype(np.int32)
        for name, probabilities in TRAITS.items()
    }


def _user_topic_probabilities(rng, traits, num_users):
    """Community probabilities per user, shape [num_users, NUM_TOPICS]."""
    logits = np.log(_zipf_weights(rng, NUM_TOPICS, TOPIC_POPULARITY))[None, :].repeat(num_users, axis=0)
    for name, classes in traits.items():
        preferences = rng.normal(size=(len(TRAITS[name]), NUM_TOPICS))
        preferences -= preferences.mean(axis=0)  # traits shift tastes, not overall popularity
        # Unit RMS, so TRAIT_STRENGTH alone sets how far a trait moves tastes, whatever the seed.
        preferences /= np.sqrt(np.mean(preferences ** 2))
        logits += TRAIT_STRENGTH[name] * preferences[classes]
    logits += USER_NOISE * rng.normal(size=logits.shape)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def _sample_events(rng, item_topic, topic_probabilities, num_users):
    """(user index, position, item index) of every behaviour."""
    num_items = len(item_topic)
    lengths = np.exp(rng.uniform(np.log(MIN_HISTORY), np.log(MAX_HISTORY + 1), size=num_users))
    lengths = np.minimum(lengths.astype(np.int64), MAX_HISTORY)
    user = np.repeat(np.arange(num_users), lengths)
    position = np.arange(len(user)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    # Community by inverse CDF: the count of cumulative probabilities below a uniform draw.
    cdf = np.cumsum(topic_probabilities, axis=1)
    draw = rng.uniform(size=len(user))
    topic = np.minimum((cdf[user] < draw[:, None]).sum(axis=1), NUM_TOPICS - 1)
    # Item within community by inverse CDF too: items sorted by community, each
    # community's popularity CDF shifted by its index, so one searchsorted serves all.
    by_topic = np.argsort(item_topic, kind="stable")
    popularity = _zipf_weights(rng, num_items, ITEM_POPULARITY)[by_topic]
    sorted_topic = item_topic[by_topic]
    cumulative = _within_topic_cdf(popularity, sorted_topic) + sorted_topic
    slot = np.searchsorted(cumulative, topic + rng.uniform(size=len(user)), side="right")
    item = by_topic[np.minimum(slot, num_items - 1)]
    explore = rng.uniform(size=len(user)) < EXPLORATION
    item = np.where(explore, rng.integers(0, num_items, size=len(user)), item)
    return user, position, item


def _within_topic_cdf(popularity, sorted_topic):
    """Cumulative popularity that restarts at each community (input sorted by community)."""
    totals = np.bincount(sorted_topic, weights=popularity)
    cumulative = np.cumsum(popularity)
    starts = np.concatenate([[0.0], np.cumsum(totals)])[sorted_topic]
    within = (cumulative - starts) / totals[sorted_topic]
    # Each community's last item ends at exactly 1, whatever the float round-off.
    within[np.append(sorted_topic[1:] != sorted_topic[:-1], True)] = 1.0
    return within


def generate_demo(seed=DEFAULT_SEED, num_users=DEFAULT_USERS, num_items=DEFAULT_ITEMS, with_truth=False):
    """Draws a demo data set.

    Args:
      with_truth: also return what the log hides (for tests of the data's properties).

    Returns:
      ``(events, items, labels)`` Arrow tables:
        events: user_id int64, position int32, item_id int64 (one row per behaviour)
        items: item_id int64, words list<string> (title words, independent of the community)
        labels: id string, segment / age_group / interest int32
      and with ``with_truth`` a fourth value, a dict: ``item_topic`` [num_items]
      int (each item's community) and ``topic_probabilities`` [num_users, NUM_TOPICS].
    """
    rng = np.random.default_rng(seed)
    item_topic, item_words = _sample_items(rng, num_items)
    traits = _sample_traits(rng, num_users)
    topic_probabilities = _user_topic_probabilities(rng, traits, num_users)
    user, position, item = _sample_events(rng, item_topic, topic_probabilities, num_users)
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
    if with_truth:
        return events, items, labels, {"item_topic": item_topic, "topic_probabilities": topic_probabilities}
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
