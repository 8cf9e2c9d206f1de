"""Reads per-user label tables for downstream evaluation.

Layouts, detected from the file name:

* ``*.parquet``, ``*.csv``, ``*.tsv``: one row per user, a user id column
  (``user_id`` or ``id`` unless named) and one column per label.
* MovieLens-1M ``users.dat`` (any ``*.dat``): ``UserID::Gender::Age::Occupation::Zip``,
  latin-1. Age is one of the 7 GroupLens brackets (1, 18, 25, 35, 45, 50, 56)
  and occupation one of 21 codes; both are classes, not numbers.
* MovieLens-100k ``u.user`` (any ``*.user``): ``id|age|gender|occupation|zip``,
  latin-1. Age is a number of years and is bucketed into the ML-1M brackets so
  both datasets have the same age task.

Ids are strings, so that they compare with user-vector ids whatever the table
stored. A missing label (null, empty cell) leaves that user out of that task.

Example:
    labels = read_labels("../shared/data/ml-1m/users.dat")
    labels.default_tasks            # ['gender', 'age', 'occupation']
    values, present = labels.column("age")
"""

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from util.errors import UserInputError

USER_ID = "user_id"
DEFAULT_ID_COLUMNS = (USER_ID, "id")

# GroupLens ML-1M age brackets: the code is the bracket's lower bound.
AGE_BRACKETS = (1, 18, 25, 35, 45, 50, 56)
ML1M_GENDERS = ("F", "M")
ML1M_OCCUPATIONS = tuple(range(21))
MOVIELENS_TASKS = ("gender", "age", "occupation")


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Labels of users, one row per user.

    Attributes:
        ids: np.ndarray[str], [num_users], unique.
        table: pyarrow.Table of the label columns (the id column removed), row i
            belongs to ``ids[i]``.
        source: the file read.
        id_column: the column the ids came from.
        default_tasks: the label columns evaluated when no task is named.
    """

    ids: np.ndarray
    table: pa.Table
    source: str
    id_column: str
    default_tasks: tuple

    def column(self, name):
        """Returns ``(values, present)``: np.ndarray [num_users] and a bool mask of known labels.

        Raises:
            UserInputError: the table has no column ``name``.
        """
        if name not in self.table.column_names:
            raise UserInputError(
                f"label file {self.source} has no column '{name}' "
                f"(label columns: {', '.join(self.table.column_names)})."
            )
        column = self.table.column(name)
        present = column.is_valid().to_numpy(zero_copy_only=False)
        values = column.to_numpy(zero_copy_only=False)
        if pa.types.is_floating(column.type):
            present &= ~np.isnan(values.astype(float))
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = np.where(present, values, "").astype(str)
        return values, present


def read_labels(path, id_column=None):
    """Reads a label table; the layout is chosen by the file name (see the module docstring).

    Args:
        path: the label file.
        id_column: the user id column of a Parquet/CSV table; ``None`` takes
            ``user_id``, else ``id``. MovieLens files always use ``user_id``.

    Raises:
        UserInputError: a missing or unreadable file, an unknown layout, a
            missing id column, null or repeated ids, or a malformed MovieLens line.
    """
    if not os.path.isfile(path):
        raise UserInputError(f"label file {path} does not exist.")
    name = os.path.basename(path).lower()
    if name.endswith(".dat") or name.endswith(".user"):
        if id_column not in (None, USER_ID):
            raise UserInputError(
                f"label file {path} is a MovieLens user file whose id column is '{USER_ID}', "
                f"not '{id_column}'."
            )
        reader = read_movielens_1m_users if name.endswith(".dat") else read_movielens_100k_users
        return reader(path)
    if name.endswith(".parquet"):
        table = _read_parquet(path)
    elif name.endswith(".csv") or name.endswith(".tsv"):
        table = _read_csv(path, delimiter="\t" if name.endswith(".tsv") else ",", id_column=id_column)
    else:
        raise UserInputError(
            f"label file {path}: cannot tell its layout from the name; expected .parquet, .csv, "
            ".tsv, a MovieLens users.dat or a MovieLens u.user."
        )
    return _label_table(table, path, id_column)


def read_movielens_1m_users(path):
    """MovieLens-1M ``users.dat`` -> LabelTable with gender, age, occupation, zip."""
    rows = _split_lines(path, "::", 5)
    user_ids, genders, ages, occupations, zips = (list(field) for field in zip(*rows))
    ages = _integers(ages, path, "Age")
    occupations = _integers(occupations, path, "Occupation")
    _check_codes(genders, ML1M_GENDERS, path, "Gender")
    _check_codes(ages, AGE_BRACKETS, path, "Age")
    _check_codes(occupations, ML1M_OCCUPATIONS, path, "Occupation")
    table = pa.table(
        {
            "gender": pa.array(genders, pa.string()),
            "age": pa.array(ages, pa.int32()),
            "occupation": pa.array(occupations, pa.int32()),
            "zip": pa.array(zips, pa.string()),
        }
    )
    return _movielens_table(user_ids, table, path)


def read_movielens_100k_users(path):
    """MovieLens-100k ``u.user`` -> LabelTable with gender, age (bucketed), occupation, zip."""
    rows = _split_lines(path, "|", 5)
    user_ids, years, genders, occupations, zips = (list(field) for field in zip(*rows))
    years = np.array(_integers(years, path, "age"))
    _check_codes(genders, ML1M_GENDERS, path, "gender")
    table = pa.table(
        {
            "gender": pa.array(genders, pa.string()),
            "age": pa.array(age_bracket(years), pa.int32()),
            "occupation": pa.array(occupations, pa.string()),
            "zip": pa.array(zips, pa.string()),
        }
    )
    return _movielens_table(user_ids, table, path)


def age_bracket(years):
    """Ages in years -> ML-1M bracket codes: <18 -> 1, 18-24 -> 18, ..., 50-55 -> 50, 56+ -> 56."""
    brackets = np.asarray(AGE_BRACKETS)
    # Each code is its bracket's lower bound, except 1, which also takes ages below 1.
    return brackets[np.maximum(np.searchsorted(brackets, np.asarray(years), side="right") - 1, 0)]


def _movielens_table(user_ids, table, path):
    ids = np.array(_integers(user_ids, path, "UserID"), dtype=np.int64).astype(str)
    _check_unique(ids, path, USER_ID)
    return LabelTable(ids=ids, table=table, source=path, id_column=USER_ID, default_tasks=MOVIELENS_TASKS)


def _split_lines(path, separator, num_fields):
    """The non-blank lines of a latin-1 file split on ``separator``; each must have ``num_fields``."""
    with open(path, encoding="latin-1") as handle:
        lines = handle.read().splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(separator)
        if len(fields) != num_fields:
            raise UserInputError(
                f"label file {path} line {number}: expected {num_fields} fields separated by "
                f"'{separator}', found {len(fields)}."
            )
        rows.append([field.strip() for field in fields])
    if not rows:
        raise UserInputError(f"label file {path} is empty.")
    return rows


def _integers(texts, path, column):
    numbers = []
    for text in texts:
        try:
            numbers.append(int(text))
        except ValueError:
            raise UserInputError(f"label file {path}: column '{column}' holds '{text}', not an integer.") from None
    return numbers


def _check_codes(values, allowed, path, column):
    unknown = sorted(set(values) - set(allowed), key=str)
    if unknown:
        raise UserInputError(
            f"label file {path}: column '{column}' holds '{unknown[0]}', which is not one of "
            f"{', '.join(map(str, allowed))}."
        )


def _read_parquet(path):
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"label file {path} is not a readable Parquet file ({error}).") from None


def _read_csv(path, delimiter, id_column):
    # Ids stay text: "007" and "7" are different users to a vector file.
    id_types = {name: pa.string() for name in (id_column or "", *DEFAULT_ID_COLUMNS) if name}
    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=id_types, strings_can_be_null=True),
        )
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(f"label file {path} is not a readable table ({error}).") from None


def _label_table(table, path, id_column):
    if id_column is None:
        id_column = next((name for name in DEFAULT_ID_COLUMNS if name in table.column_names), None)
        if id_column is None:
            raise UserInputError(
                f"label file {path} has neither a '{USER_ID}' nor an 'id' column; "
                "name its user id column with --label_id_column."
            )
    elif id_column not in table.column_names:
        raise UserInputError(
            f"label file {path} has no column '{id_column}' (it has: {', '.join(table.column_names)})."
        )
    id_values = table.column(id_column)
    if id_values.null_count:
        raise UserInputError(f"label file {path}: column '{id_column}' has empty user ids.")
    if pa.types.is_floating(id_values.type):
        raise UserInputError(
            f"label file {path}: column '{id_column}' holds decimals; user ids must be integers or text."
        )
    ids = id_values.cast(pa.string()).to_numpy().astype(str)
    _check_unique(ids, path, id_column)
    labels = table.drop_columns([id_column])
    if labels.num_columns == 0:
        raise UserInputError(f"label file {path} has no label columns besides '{id_column}'.")
    return LabelTable(
        ids=ids, table=labels, source=path, id_column=id_column, default_tasks=tuple(labels.column_names)
    )


def _check_unique(ids, path, column):
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        raise UserInputError(f"label file {path}: column '{column}' repeats user id '{unique[np.argmax(counts)]}'.")
