"""The tsv separator rule: a separator that could occur inside a number is refused, others round-trip."""

import numpy as np
import pytest

from data_dumper.user_vector_writer import vector_format
from data_loader.user_vectors import read_user_vectors
from util.errors import UserInputError

# Numbers pyarrow prints for float32 vectors: signs, exponents, decimals.
VECTORS = np.array([[-0.5, 1e-7, 3.0], [1e20, -2.25e-12, 0.125]], dtype=np.float32)
IDS = np.array([b"alice", b"bob"], dtype=object)


@pytest.mark.parametrize("separator", [".", "-", "+", "e", "E", ",", "7", "n", "inf", "a|", "",
                                       "\n", "\r"])
def test_separator_that_can_occur_inside_a_number_is_refused_by_writer_and_reader(separator,
                                                                                 tmp_path):
    with pytest.raises(UserInputError, match=r"^--separator=.* cannot separate the fields"):
        vector_format("tsv", separator)
    (tmp_path / "v.tsv").write_text("alice\t1,2\t3\n")
    with pytest.raises(UserInputError, match=r"^--separator=.* cannot split tsv vector lines"):
        read_user_vectors(str(tmp_path / "v.tsv"), separator=separator)


def test_separator_only_matters_for_tsv():
    assert vector_format("parquet", ".").name == "parquet"


@pytest.mark.parametrize("separator", ["\t", "\\t", "tab", " ", "|", ";", "::", "\x01"])
def test_safe_separators_write_lines_that_read_back(separator, tmp_path):
    fmt = vector_format("tsv", separator)
    path = fmt.output_path(str(tmp_path), "tables/inference/part-00000-of-00001.parquet")
    with fmt.open(path, dim=3) as writer:
        writer.write(IDS, VECTORS, np.array([4, 5]))
    vectors = read_user_vectors(path, separator=separator)
    assert vectors.ids.tolist() == ["alice", "bob"]
    np.testing.assert_array_equal(vectors.vectors, VECTORS)
