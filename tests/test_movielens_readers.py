"""MovieLens readers: the GroupLens ml-1m and ml-100k layouts and the shared events layout.

Every fixture file is written here, small, in the layout's own format; the
shared MovieLens-1M data is only read by the one real-data test at the end.
"""

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import schema
from data_dumper import movielens, vocabulary
from data_dumper.build_config import BuildConfig
from data_dumper.build_tables import build_tables
from util.errors import UserInputError

MOVIES_DAT = (
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "914::My Fair Lady (1964)::Musical|Romance\n"
    "3408::Erin Brockovich (2000)::Drama\n"
    "73::Misérables, Les (1995)::Drama|Musical\n"
    "2355::Bug's Life, A (1998)::Animation|Children's|Comedy\n"
)
USERS_DAT = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
# User 1 in time order: 3408, 1193, 914, 661, 73. User 2 rates 914 and 661 at the
# same second (ties go by movie id: 661 first). User 3 rates a movie missing from movies.dat.
RATINGS_DAT = (
    "1::1193::5::978300760\n1::661::3::978302109\n1::914::3::978301968\n"
    "1::3408::4::978300275\n1::73::5::978824291\n"
    "2::914::5::978298413\n2::661::4::978298413\n2::1193::4::978200000\n"
    "3::9999::2::978100000\n3::2355::2::978100001\n"
)
EVENTS_ORDER = {1: [3408, 1193, 914, 661, 73], 2: [1193, 661, 914], 3: [9999, 2355]}


# ml-100k: 19 genre flags in u.genre's order (unknown, Action, Adventure, Animation, ...).
def genre_flags(*names):
    return "|".join("1" if genre in names else "0" for genre in movielens.ML_100K_GENRES)


TOY_STORY_GENRES = genre_flags("Animation", "Children's", "Comedy")
GOLDENEYE_GENRES = genre_flags("Action", "Adventure", "Thriller")
CAFE_GENRES = genre_flags("Film-Noir", "Sci-Fi")
U_ITEM = (
    f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{TOY_STORY_GENRES}\n"
    f"2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?GoldenEye%20(1995)|{GOLDENEYE_GENRES}\n"
    f"3|Café Society|01-Jan-1996||http://us.imdb.com/|{CAFE_GENRES}\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"
U_DATA = "1\t2\t3\t881250949\n1\t1\t4\t881250000\n2\t3\t5\t891717742\n1\t3\t1\t881251000\n"


def write_files(folder, files, encoding="latin-1"):
    os.makedirs(folder, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(folder, name), "w", encoding=encoding, newline="") as handle:
            handle.write(text)
    return str(folder)


@pytest.fixture
def ml_1m(tmp_path):
    return write_files(
        tmp_path / "ml-1m", {"ratings.dat": RATINGS_DAT, "movies.dat": MOVIES_DAT, "users.dat": USERS_DAT}
    )


@pytest.fixture
def ml_100k(tmp_path):
    return write_files(tmp_path / "ml-100k", {"u.data": U_DATA, "u.item": U_ITEM, "u.user": U_USER})


@pytest.fixture
def events_layout(tmp_path):
    folder = write_files(tmp_path / "events", {"movies.dat": MOVIES_DAT, "users.dat": USERS_DAT})
    users, items, positions = [], [], []
    for user, order in EVENTS_ORDER.items():
        for position, item in reversed(list(enumerate(order))):  # file order must not matter
            users.append(user)
            items.append(item)
            positions.append(position)
    pq.write_table(
        pa.table({"user_id": pa.array(users, pa.int64()), "item_id": pa.array(items, pa.int64()),
                  "seq_pos": pa.array(positions, pa.int32())}),
        os.path.join(folder, "events.parquet"),
    )
    return folder


def build(tmp_path, folder, **flags):
    output = str(tmp_path / "tables")
    settings = {"num_shards": 2, **flags}
    manifest = build_tables(BuildConfig(output_dir=output, movielens=folder, **settings), log=lambda line: None)
    return manifest, output


def inference_words(manifest, output):
    """``{user id: [[word, ...] per behaviour]}`` from the inference table."""
    words = vocabulary.read_vocabulary(os.path.join(output, schema.VOCABULARY_FILE))
    names = [os.path.basename(path) for path in manifest["files"][schema.INFERENCE_SUBDIR]]
    table = pa.concat_tables(
        [pq.read_table(os.path.join(output, schema.INFERENCE_SUBDIR, name)) for name in names]
    )
    return {
        row[schema.ID]: [[words[w] for w in behaviour] for behaviour in row[schema.HISTORY]]
        for row in table.to_pylist()
    }


@pytest.mark.parametrize(
    "fixture, layout", [("ml_1m", movielens.ML_1M), ("ml_100k", movielens.ML_100K), ("events_layout", movielens.EVENTS)]
)
def test_layout_is_detected(request, fixture, layout):
    assert movielens.detect_layout(request.getfixturevalue(fixture)) == layout


@pytest.mark.parametrize("fixture", ["ml_1m", "events_layout"])
def test_ml_1m_words_order_and_labels(request, tmp_path, fixture):
    manifest, output = build(tmp_path, request.getfixturevalue(fixture))
    histories = inference_words(manifest, output)
    assert [behaviour[0] for behaviour in histories["1"]] == [f"item:{m}" for m in EVENTS_ORDER[1]]
    assert [behaviour[0] for behaviour in histories["2"]] == [f"item:{m}" for m in EVENTS_ORDER[2]]
    assert histories["1"][1] == [
        "item:1193", "genre:drama", "one", "flew", "over", "the", "cuckoo", "s", "nest", "year:1975",
    ]
    assert histories["1"][3] == [
        "item:661", "genre:animation", "genre:childrens", "genre:musical",
        "james", "and", "the", "giant", "peach", "year:1996",
    ]
    # Latin-1 titles decode; the title's year becomes a token, not words.
    assert histories["1"][4] == ["item:73", "genre:drama", "genre:musical", "misérables", "les", "year:1995"]
    # A movie missing from movies.dat keeps its id token.
    assert histories["3"][0] == ["item:9999"]
    assert (manifest["num_users"], manifest["num_items"], manifest["num_events"]) == (3, 7, 10)

    labels = pq.read_table(os.path.join(output, schema.LABELS_FILE))
    assert manifest["labels_file"] == schema.LABELS_FILE
    assert labels.schema.names == ["id", "gender", "age", "occupation"]
    assert labels.to_pylist()[1] == {"id": "2", "gender": "M", "age": 56, "occupation": 16}
    assert labels.schema.field("id").type == pa.string()


def test_ml_100k_words_order_and_labels(tmp_path, ml_100k):
    manifest, output = build(tmp_path, ml_100k)
    assert manifest["source"].startswith("MovieLens ml-100k layout")
    histories = inference_words(manifest, output)
    # User 1 by timestamp: movie 1 (881250000), 2 (881250949), 3 (881251000).
    assert histories["1"] == [
        ["item:1", "genre:animation", "genre:childrens", "genre:comedy", "toy", "story", "year:1995"],
        ["item:2", "genre:action", "genre:adventure", "genre:thriller", "goldeneye", "year:1995"],
        # No year in the title: the release date's year stands in.
        ["item:3", "genre:film-noir", "genre:sci-fi", "café", "society", "year:1996"],
    ]
    labels = pq.read_table(os.path.join(output, schema.LABELS_FILE)).to_pylist()
    assert labels == [
        # Ages in years go into ml-1m's brackets: 24 -> 18, 53 -> 50.
        {"id": "1", "gender": "M", "age": 18, "occupation": "technician"},
        {"id": "2", "gender": "F", "age": 50, "occupation": "other"},
    ]


def test_layout_can_be_named(tmp_path, ml_1m):
    manifest, _ = build(tmp_path, ml_1m, movielens_layout=movielens.ML_1M)
    assert manifest["flags"]["movielens_layout"] == movielens.ML_1M
    with pytest.raises(UserInputError, match=r"u\.data does not exist"):
        build(tmp_path, ml_1m, movielens_layout=movielens.ML_100K, overwrite=True)


def test_vocabulary_holds_words_of_the_log_only(tmp_path, ml_1m):
    _, output = build(tmp_path, ml_1m)
    words = vocabulary.read_vocabulary(os.path.join(output, schema.VOCABULARY_FILE))
    # Labels never feed the vocabulary, and movies nobody rated add no words.
    assert "f" not in words and "48067" not in words
    assert "genre:comedy" in words  # 2355 is rated by user 3
    assert "genre:romance" in words and "year:1964" in words  # My Fair Lady, rated twice
    # Musicals were rated 5 times (661 twice, 914 twice, 73 once): the most frequent
    # word; then "genre:drama" (1193 twice, 3408, 73), "the" (1193 and 661 twice each), ...
    assert words[2:5] == ["genre:musical", "genre:drama", "the"]


def test_missing_users_file(tmp_path, ml_1m):
    os.remove(os.path.join(ml_1m, "users.dat"))
    with pytest.raises(UserInputError, match=r"MovieLens file .*ml-1m/users\.dat does not exist"):
        build(tmp_path, ml_1m)
    assert not os.path.exists(tmp_path / "tables")


def test_malformed_ratings_line_names_file_and_line(tmp_path, ml_1m):
    with open(os.path.join(ml_1m, "ratings.dat"), "a") as handle:
        handle.write("4::abc::3::978300760\n")
    with pytest.raises(UserInputError, match=r"could not read .*ratings\.dat: .*Line: 11.*\"movie\""):
        build(tmp_path, ml_1m)


def test_short_ratings_line(tmp_path, ml_1m):
    with open(os.path.join(ml_1m, "ratings.dat"), "a") as handle:
        handle.write("4::12\n")
    with pytest.raises(UserInputError, match=r"could not read .*ratings\.dat"):
        build(tmp_path, ml_1m)


def test_empty_field_names_line(tmp_path, ml_1m):
    with open(os.path.join(ml_1m, "ratings.dat"), "a") as handle:
        handle.write("4::::3::978300760\n")
    with pytest.raises(UserInputError, match=r"field 'movie' of .*ratings\.dat is empty at line 11"):
        build(tmp_path, ml_1m)


def test_empty_ratings_file(tmp_path, ml_1m):
    write_files(ml_1m, {"ratings.dat": ""})
    with pytest.raises(UserInputError, match=r"ratings\.dat is empty"):
        build(tmp_path, ml_1m)


def test_events_layout_checks_its_columns(tmp_path, events_layout):
    pq.write_table(pa.table({"user_id": [1], "item_id": [2], "position": [0]}),
                   os.path.join(events_layout, "events.parquet"))
    with pytest.raises(UserInputError, match=r"events\.parquet has no column 'seq_pos'"):
        build(tmp_path, events_layout)


def test_folder_without_a_known_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"holds none of ratings\.dat, u\.data, events\.parquet"):
        build(tmp_path, str(tmp_path / "empty"))
    with pytest.raises(UserInputError, match=r"--movielens=.*nowhere does not exist"):
        build(tmp_path, str(tmp_path / "nowhere"))


@pytest.mark.ml1m
def test_real_movielens_1m(tmp_path, ml1m_dir):
    started = time.perf_counter()
    manifest, output = build(tmp_path, ml1m_dir, num_shards=4)
    seconds = time.perf_counter() - started
    assert manifest["num_users"] == 6040
    assert manifest["num_items"] == 3416
    assert manifest["num_events"] == 994083
    assert manifest["num_inference_users"] == 6040
    assert manifest["num_training_users"] == 6040  # every user has >= 17 behaviours
    with open(os.path.join(output, schema.MANIFEST_FILE)) as handle:
        assert json.load(handle)["num_users"] == 6040
    labels = pq.read_table(os.path.join(output, schema.LABELS_FILE))
    assert labels.num_rows == 6040
    assert sorted(set(labels.column("age").to_pylist())) == [1, 18, 25, 35, 45, 50, 56]
    for path in manifest["files"][schema.TRAIN_SUBDIR]:
        assert pq.read_schema(os.path.join(output, path)).equals(schema.TRAINING_SCHEMA)
    assert seconds < 30, f"ml-1m tables took {seconds:.1f} s"
