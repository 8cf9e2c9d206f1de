"""Readers behind main/evaluate.py: user vectors (3 layouts), label tables, bags of words."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.schema import INFERENCE_SCHEMA
from data_loader.bag_of_words import read_bag_of_words
from data_loader.labels import age_bracket, read_labels
from data_loader.user_vectors import read_user_vectors
from util.errors import UserInputError

IDS = np.array(["7", "3", "u-11", "42", "5"])
VECTORS = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)


def write_parquet_vectors(path, ids, vectors, list_size=None):
    dim = vectors.shape[1] if list_size is None else list_size
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)
    table = pa.table({"id": pa.array(ids, pa.string()), "embedding": embedding,
                      "length": pa.array(np.full(len(ids), 3), pa.int32())})
    pq.write_table(table, path)


def write_npy_vectors(folder, name, ids, vectors):
    np.save(os.path.join(folder, f"{name}.npy"), vectors)
    with open(os.path.join(folder, f"{name}.ids.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(ids) + "\n")


def write_tsv_vectors(path, ids, vectors, separator="\t"):
    """SUMN's text layout: id<separator>v1,...,vd<separator>length."""
    with open(path, "w", encoding="utf-8") as handle:
        for user_id, row in zip(ids, vectors):
            numbers = ",".join(repr(float(value)) for value in row)
            handle.write(f"{user_id}{separator}{numbers}{separator}3\n")


def write_tfrecord_vectors(path, ids, vectors):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for user_id, row in zip(ids, vectors):
            feature = {
                "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[user_id.encode()])),
                "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=row)),
                "length": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


# --- user vectors -------------------------------------------------------------------------


def test_three_vector_layouts_agree(tmp_path):
    parquet_dir = tmp_path / "parquet"
    parquet_dir.mkdir()
    write_parquet_vectors(parquet_dir / "part-00000-of-00002.parquet", IDS[:2], VECTORS[:2])
    write_parquet_vectors(parquet_dir / "part-00001-of-00002.parquet", IDS[2:], VECTORS[2:])
    (parquet_dir / "_SUCCESS").write_text("")
    npy_dir = tmp_path / "npy"
    npy_dir.mkdir()
    write_npy_vectors(npy_dir, "part-00000", IDS[:3], VECTORS[:3])
    write_npy_vectors(npy_dir, "part-00001", IDS[3:], VECTORS[3:])
    (npy_dir / "part-00000.lengths.txt").write_text("3\n3\n3\n")
    (npy_dir / "inference.json").write_text("{}")
    write_tsv_vectors(tmp_path / "vectors.tsv", IDS, VECTORS)
    write_tsv_vectors(tmp_path / "vectors_bar.tsv", IDS, VECTORS, separator="|")
    (tmp_path / "no_length.tsv").write_text(
        "".join(f"{i}\t{','.join(map(str, row))}\n" for i, row in zip(IDS, VECTORS.tolist())))

    readings = {
        "parquet folder": read_user_vectors(str(parquet_dir)),
        "parquet glob": read_user_vectors(str(parquet_dir / "part-*.parquet")),
        "parquet list": read_user_vectors([str(p) for p in sorted(parquet_dir.glob("*.parquet"))]),
        "npy folder": read_user_vectors(str(npy_dir)),
        "npy glob": read_user_vectors(str(npy_dir / "part-*")),
        "tsv": read_user_vectors(str(tmp_path / "vectors.tsv")),
        "tsv with separator |": read_user_vectors(str(tmp_path / "vectors_bar.tsv"), separator="|"),
        "tsv without length": read_user_vectors(str(tmp_path / "no_length.tsv"), separator="\\t"),
    }
    for layout, reading in readings.items():
        np.testing.assert_array_equal(reading.ids, IDS, err_msg=layout)
        np.testing.assert_allclose(reading.vectors, VECTORS, rtol=1e-6, err_msg=layout)
        assert reading.vectors.dtype == np.float32 and reading.dim == 4, layout


def test_tfrecord_vectors_agree_with_parquet(tmp_path):
    write_tfrecord_vectors(tmp_path / "part-00000.tfrecord", IDS, VECTORS)
    reading = read_user_vectors(str(tmp_path))
    np.testing.assert_array_equal(reading.ids, IDS)
    np.testing.assert_allclose(reading.vectors, VECTORS, rtol=1e-6)


def test_variable_length_list_column_with_equal_lengths_is_read(tmp_path):
    embedding = pa.array([list(map(float, row)) for row in VECTORS], pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": IDS, "embedding": embedding}), tmp_path / "v.parquet")
    np.testing.assert_allclose(read_user_vectors(str(tmp_path / "v.parquet")).vectors, VECTORS)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_path", r"does not exist"),
        ("missing_embedding_column", r"v\.parquet has no column 'embedding'"),
        ("dimension_differs_between_shards", r"b\.parquet: column 'embedding' has dimension 3, but .*a\.parquet has 4"),
        ("nan_vector", r"v\.parquet: column 'embedding' has NaN or infinite values \(first at id 'u-11'\)"),
        ("repeated_id", r"column 'id' repeats id '7'"),
        ("npy_without_ids", r"v\.npy has no id file .*v\.ids\.txt"),
        ("npy_id_count_differs", r"v\.ids\.txt has 4 ids but .*v\.npy has 5 rows"),
        ("tsv_ragged", r"v\.tsv: column 'embedding' has 3 values for id '3' but 4"),
        ("tsv_not_numbers", r"v\.tsv: the 'embedding' field holds a value that is not a number"),
        ("tsv_without_tab", r"v\.tsv line 2: expected 'id\tv1,...,vd\tlength' with separator '\\t', found 1"),
    ],
)
def test_bad_vector_files_raise_naming_file_and_column(tmp_path, case, pattern):
    target = tmp_path / "v.parquet"
    if case == "missing_path":
        target = tmp_path / "nowhere"
    elif case == "missing_embedding_column":
        pq.write_table(pa.table({"id": IDS, "vector": VECTORS.tolist()}), target)
    elif case == "dimension_differs_between_shards":
        target = tmp_path
        write_parquet_vectors(tmp_path / "a.parquet", IDS[:2], VECTORS[:2])
        write_parquet_vectors(tmp_path / "b.parquet", IDS[2:], VECTORS[2:, :3])
    elif case == "nan_vector":
        broken = VECTORS.copy()
        broken[2, 1] = np.nan
        write_parquet_vectors(target, IDS, broken)
    elif case == "repeated_id":
        write_parquet_vectors(target, np.array(["7", "7", "1", "2", "3"]), VECTORS)
    elif case.startswith("npy"):
        target = tmp_path / "v.npy"
        np.save(target, VECTORS)
        if case == "npy_id_count_differs":
            (tmp_path / "v.ids.txt").write_text("\n".join(IDS[:4]) + "\n")
    else:
        target = tmp_path / "v.tsv"
        lines = {
            "tsv_ragged": "7\t1,2,3,4\t2\n3\t1,2,3\t2\n",
            "tsv_not_numbers": "7\t1,2,3,4\t2\n3\t1,2,x,4\t2\n",
            "tsv_without_tab": "7\t1,2,3,4\t2\n3 1,2,3,4 2\n",
        }[case]
        target.write_text(lines)
    with pytest.raises(UserInputError, match=pattern):
        read_user_vectors(str(target))


# --- labels -------------------------------------------------------------------------------

USERS_DAT = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n10::F::35::1::95370\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|writer|32067\n4|56|M|technician|43537\n5|18|F|other|15213\n"


def test_users_dat_reader_gives_classes(tmp_path):
    path = tmp_path / "users.dat"
    path.write_bytes(USERS_DAT.encode("latin-1"))
    labels = read_labels(str(path))
    np.testing.assert_array_equal(labels.ids, ["1", "2", "3", "10"])
    assert labels.default_tasks == ("gender", "age", "occupation")
    np.testing.assert_array_equal(labels.column("gender")[0], ["F", "M", "M", "F"])
    np.testing.assert_array_equal(labels.column("age")[0], [1, 56, 25, 35])
    np.testing.assert_array_equal(labels.column("occupation")[0], [10, 16, 15, 1])


def test_u_user_reader_buckets_age_into_ml1m_brackets(tmp_path):
    path = tmp_path / "u.user"
    path.write_text(U_USER, encoding="latin-1")
    labels = read_labels(str(path))
    np.testing.assert_array_equal(labels.column("age")[0], [18, 50, 1, 56, 18])
    np.testing.assert_array_equal(labels.column("occupation")[0], ["technician", "other", "writer", "technician", "other"])
    np.testing.assert_array_equal(
        age_bracket([0, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 90]),
        [1, 1, 18, 18, 25, 25, 35, 35, 45, 45, 50, 50, 56, 56],
    )


def test_csv_and_parquet_tables_give_string_ids_and_missing_labels(tmp_path):
    (tmp_path / "labels.csv").write_text("id,segment,score\n7,a,1\n3,,2\n42,b,\n")
    labels = read_labels(str(tmp_path / "labels.csv"))
    np.testing.assert_array_equal(labels.ids, ["7", "3", "42"])
    assert labels.id_column == "id" and labels.default_tasks == ("segment", "score")
    values, present = labels.column("segment")
    np.testing.assert_array_equal(present, [True, False, True])
    np.testing.assert_array_equal(labels.column("score")[1], [True, True, False])

    pq.write_table(pa.table({"member": [7, 3], "user_id": ["x", "y"], "churn": [0, 1]}), tmp_path / "l.parquet")
    labels = read_labels(str(tmp_path / "l.parquet"), id_column="member")
    np.testing.assert_array_equal(labels.ids, ["7", "3"])
    assert labels.default_tasks == ("user_id", "churn")


@pytest.mark.parametrize(
    "name, text, id_column, pattern",
    [
        ("users.dat", "1::F::1::10::48067\n2::X::56::16::70072\n", None, r"users\.dat: column 'Gender' holds 'X'"),
        ("users.dat", "1::F::1::10::48067\n2::M::30::16::70072\n", None, r"users\.dat: column 'Age' holds '30'"),
        ("users.dat", "1::F::1::10\n", None, r"users\.dat line 1: expected 5 fields"),
        ("users.dat", USERS_DAT, "member", r"users\.dat is a MovieLens user file whose id column is 'user_id'"),
        ("u.user", "1|abc|M|other|1\n", None, r"u\.user: column 'age' holds 'abc'"),
        ("labels.csv", "member,gender\n1,F\n", None, r"labels\.csv has neither a 'user_id' nor an 'id' column"),
        ("labels.csv", "id,gender\n1,F\n", "member", r"labels\.csv has no column 'member'"),
        ("labels.csv", "id,gender\n1,F\n1,M\n", None, r"labels\.csv: column 'id' repeats user id '1'"),
        ("labels.json", "{}", None, r"labels\.json: cannot tell its layout"),
    ],
)
def test_bad_label_files_raise_naming_file_and_column(tmp_path, name, text, id_column, pattern):
    (tmp_path / name).write_text(text, encoding="latin-1")
    with pytest.raises(UserInputError, match=pattern):
        read_labels(str(tmp_path / name), id_column=id_column)


def test_unknown_label_column_is_named():
    from data_loader.labels import LabelTable

    labels = LabelTable(ids=np.array(["1"]), table=pa.table({"gender": ["F"]}), source="l.csv",
                        id_column="id", default_tasks=("gender",))
    with pytest.raises(UserInputError, match=r"label file l\.csv has no column 'agee'"):
        labels.column("agee")


@pytest.mark.ml1m
def test_real_ml1m_users_dat(ml1m_dir):
    labels = read_labels(os.path.join(ml1m_dir, "users.dat"))
    assert len(labels.ids) == 6040
    assert len(np.unique(labels.column("gender")[0])) == 2
    assert len(np.unique(labels.column("age")[0])) == 7
    assert len(np.unique(labels.column("occupation")[0])) == 21


# --- bag of words -------------------------------------------------------------------------


def write_inference_table(folder, users, vocabulary_size=None):
    """users: {id: [[word ids of behaviour], ...]} -> <folder>/inference/ in two shards."""
    (folder / "inference").mkdir(parents=True)
    ids = list(users)
    history = [users[user_id] for user_id in ids]
    table = pa.table(
        {"id": ids, "history": history, "history_length": [len(h) for h in history]}, schema=INFERENCE_SCHEMA
    )
    pq.write_table(table.slice(0, 1), folder / "inference" / "part-00000-of-00002.parquet")
    pq.write_table(table.slice(1), folder / "inference" / "part-00001-of-00002.parquet")
    if vocabulary_size:
        words = ["<pad>", "<oov>"] + [f"w{i}" for i in range(2, vocabulary_size)]
        (folder / "vocabulary.txt").write_text("\n".join(words) + "\n")


def test_bag_of_words_counts_every_word_of_every_behaviour(tmp_path):
    write_inference_table(tmp_path, {"a": [[2, 3], [3], [5, 1]], "b": [], "c": [[4], [4, 4, 2]]}, vocabulary_size=8)
    bag = read_bag_of_words(str(tmp_path))
    np.testing.assert_array_equal(bag.ids, ["a", "b", "c"])
    expected = np.zeros((3, 8))
    expected[0, [2, 3, 5]] = [1, 2, 1]  # the out-of-vocabulary id 1 is not a word
    expected[2, [2, 4]] = [1, 3]
    np.testing.assert_array_equal(bag.counts.toarray(), expected)


def test_bag_of_words_rejects_word_ids_beyond_the_vocabulary(tmp_path):
    write_inference_table(tmp_path, {"a": [[2, 9]], "b": [[3]]}, vocabulary_size=5)
    with pytest.raises(UserInputError, match=r"column 'history' holds word id 9, beyond the 5 words"):
        read_bag_of_words(str(tmp_path))


def test_bag_of_words_names_a_missing_history_column(tmp_path):
    (tmp_path / "inference").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "inference" / "part-0.parquet")
    with pytest.raises(UserInputError, match=r"part-0\.parquet has no column 'history'"):
        read_bag_of_words(str(tmp_path))
