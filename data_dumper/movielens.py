"""Readers for MovieLens folders: behaviours, movie words and user labels.

Three layouts, told apart by the files in the folder (``detect_layout``):

    ml-1m     GroupLens MovieLens-1M: ratings.dat ``UserID::MovieID::Rating::Timestamp``,
              users.dat ``UserID::Gender::Age::Occupation::Zip``,
              movies.dat ``MovieID::Title (Year)::Genre|Genre``; latin-1, ``::`` separated
    ml-100k   GroupLens MovieLens-100K: u.data ``user item rating timestamp`` (tabs),
              u.user ``id|age|gender|occupation|zip``, u.item ``id|title|release date|
              video release date|IMDb URL|`` + 19 genre flags (latin-1, ``|`` separated)
    events    this project's shared copy: events.parquet ``user_id, item_id, seq_pos``
              (order only) + users.dat + movies.dat as in ml-1m

A behaviour's words: the movie-id token ``item:<id>``, its genre tokens
(``genre:comedy``, ``genre:childrens``, ``genre:sci-fi``), the lower-cased words of
its title without the year, and a year token (``year:1995``; for ml-100k titles
without a year, the release date's year). Behaviours are ordered by timestamp
(ties by movie id) or by ``seq_pos``.

Labels (``labels.parquet``): ``id`` (string), ``gender`` ("F"/"M"), ``age`` and
``occupation``. ``age`` is ml-1m's bracket code (1, 18, 25, 35, 45, 50, 56: the
bracket's lower bound); ml-100k's ages in years are put into the same brackets,
so both datasets pose the same 7-class age task. ``occupation`` is ml-1m's code
(an integer 0..20, see its README) or ml-100k's occupation name.
"""

import os

from data_dumper import behaviour_log, input_files, sql_dialect
from data_dumper.sql import first_row, sql_string
from util.errors import UserInputError

ML_1M = "ml-1m"
ML_100K = "ml-100k"
EVENTS = "events"
LAYOUTS = (ML_1M, ML_100K, EVENTS)
AUTO = "auto"

# The file whose presence marks each layout, checked in this order.
LAYOUT_MARKERS = ((ML_1M, "ratings.dat"), (ML_100K, "u.data"), (EVENTS, "events.parquet"))

# ml-100k's genre flag columns, in u.genre's order.
ML_100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

# A title's trailing "(1995)"; group 1 is the year.
TITLE_YEAR = r"\s*\((\d{4})\)\s*$"

# ml-1m's age brackets, each coded by its lower bound (the first also takes younger ages).
AGE_BRACKETS = (1, 18, 25, 35, 45, 50, 56)
_AGE_BRACKET_SQL = (
    "CASE WHEN age IS NULL THEN NULL "
    + " ".join(f"WHEN age < {upper} THEN {lower}" for lower, upper in zip(AGE_BRACKETS, AGE_BRACKETS[1:]))
    + f" ELSE {AGE_BRACKETS[-1]} END::INTEGER"
)


def detect_layout(folder):
    """The layout of a MovieLens folder, from the files it holds."""
    if not os.path.isdir(folder):
        raise UserInputError(f"MovieLens folder --movielens={folder} does not exist.")
    for layout, marker in LAYOUT_MARKERS:
        if os.path.exists(os.path.join(folder, marker)):
            return layout
    markers = ", ".join(marker for _, marker in LAYOUT_MARKERS)
    raise UserInputError(
        f"MovieLens folder {folder} holds none of {markers}; "
        f"name its layout with --movielens_layout ({', '.join(LAYOUTS)})."
    )


def load_movielens(con, folder, layout=AUTO):
    """Loads a MovieLens folder into ``events`` and ``item_text``; returns its labels too.

    Args:
      con: a DuckDB connection.
      folder: the MovieLens folder.
      layout: one of ``LAYOUTS``, or ``"auto"`` to detect it.

    Returns:
      A ``behaviour_log.LoadedLog`` whose ``labels`` has id, gender, age, occupation.
    """
    if layout == AUTO:
        layout = detect_layout(folder)
    if layout not in LAYOUTS:
        raise UserInputError(f"--movielens_layout={layout} is not one of {AUTO}, {', '.join(LAYOUTS)}.")
    if layout == ML_100K:
        _load_100k_ratings(con, folder)
        _load_100k_movies(con, folder)
        labels = _read_100k_users(con, folder)
    else:
        if layout == ML_1M:
            _load_1m_ratings(con, folder)
        else:
            _load_events_parquet(con, folder)
        _load_1m_movies(con, folder)
        labels = _read_1m_users(con, folder)
    _require_events(con, folder)
    return behaviour_log.LoadedLog(description=f"MovieLens {layout} layout at {folder}", labels=labels)


def _dat_scan(path, separator, columns, encoding="utf-8"):
    """A ``read_csv`` of a header-less GroupLens file with fixed columns and no quoting."""
    column_types = ", ".join(f"{sql_string(name)}: {sql_string(kind)}" for name, kind in columns)
    return (
        f"read_csv({sql_string(path)}, delim = {sql_string(separator)}, header = false, "
        f"auto_detect = false, quote = '', escape = '', encoding = {sql_string(encoding)}, "
        f"columns = {{{column_types}}})"
    )


def _file(folder, name):
    path = os.path.join(folder, name)
    input_files.require_file(path, "MovieLens file")
    return path


def _create_events(con, path, scan, user, order, item, file_format="csv"):
    input_files.run_on_file(
        con,
        f"CREATE OR REPLACE TABLE {behaviour_log.EVENTS_TABLE} AS "
        f"SELECT {user} AS user_id, {order} AS order_key, {item} AS item_id FROM {scan}",
        path,
    )
    found = first_row(
        con,
        f"SELECT count(*) FROM {behaviour_log.EVENTS_TABLE} "
        f"WHERE user_id IS NULL OR order_key IS NULL OR item_id IS NULL",
    )[0]
    if found:
        column, where = input_files.first_null(
            con, scan, (user, order, item), file_format, has_header=False
        )
        raise UserInputError(f"field '{column}' of {path} is empty at {where}.")


def _load_1m_ratings(con, folder):
    path = _file(folder, "ratings.dat")
    scan = _dat_scan(
        path, "::",
        [("user", "BIGINT"), ("movie", "BIGINT"), ("rating", "DOUBLE"), ("timestamp", "BIGINT")],
    )
    _create_events(con, path, scan, "user", "timestamp", "movie")


def _load_100k_ratings(con, folder):
    path = _file(folder, "u.data")
    scan = _dat_scan(
        path, "\t",
        [("user", "BIGINT"), ("movie", "BIGINT"), ("rating", "DOUBLE"), ("timestamp", "BIGINT")],
    )
    _create_events(con, path, scan, "user", "timestamp", "movie")


def _load_events_parquet(con, folder):
    path = _file(folder, "events.parquet")
    scan = input_files.scan_sql(path, "parquet")
    types = input_files.column_types(con, scan, path)
    input_files.require_column(
        types, "user_id", path, "the events layout", input_files.is_id_type, "integers or strings"
    )
    input_files.require_column(
        types, "item_id", path, "the events layout", input_files.is_id_type, "integers or strings"
    )
    input_files.require_column(
        types, "seq_pos", path, "the events layout", input_files.is_order_type, "numbers"
    )
    _create_events(con, path, scan, "user_id", "seq_pos", "item_id", file_format="parquet")


def _require_events(con, folder):
    if first_row(con, f"SELECT count(*) FROM {behaviour_log.EVENTS_TABLE}")[0] == 0:
        raise UserInputError(f"the MovieLens folder {folder} has no ratings (its behaviour file has no rows).")


def _movie_words_sql(title, genres, fallback_year="NULL"):
    """SQL for a movie's words (without the id token) from its title and genre list."""
    year = f"coalesce(nullif(regexp_extract({title}, {sql_string(TITLE_YEAR)}, 1), ''), {fallback_year})"
    bare_title = f"regexp_replace({title}, {sql_string(TITLE_YEAR)}, '')"
    # "Children's" -> "childrens", "Sci-Fi" -> "sci-fi": one token per genre.
    genre_token = (
        "'genre:' || trim(regexp_replace(replace(lower(trim(g)), '''', ''), '[^a-z0-9]+', '-', 'g'), '-')"
    )
    return (
        f"list_transform(list_filter({genres}, lambda g: trim(g) <> ''), lambda g: {genre_token})"
        f" || {behaviour_log.text_words_sql(sql_dialect.DUCKDB, bare_title)}"
        f" || CASE WHEN {year} IS NULL THEN []::VARCHAR[] ELSE ['year:' || {year}] END"
    )


def _create_item_text(con, path, scan, id_column, words):
    input_files.run_on_file(
        con,
        f"CREATE OR REPLACE TABLE {behaviour_log.ITEM_TEXT_TABLE} AS "
        f"SELECT CAST({id_column} AS VARCHAR) AS item_key, {words} AS words FROM {scan} "
        f"WHERE {id_column} IS NOT NULL",
        path,
    )


def _load_1m_movies(con, folder):
    path = _file(folder, "movies.dat")
    scan = _dat_scan(
        path, "::", [("movie", "BIGINT"), ("title", "VARCHAR"), ("genres", "VARCHAR")], "latin-1"
    )
    words = _movie_words_sql("coalesce(title, '')", "string_split(coalesce(genres, ''), '|')")
    _create_item_text(con, path, scan, "movie", words)


def _load_100k_movies(con, folder):
    path = _file(folder, "u.item")
    flags = [(f"genre_{index}", "INTEGER") for index in range(len(ML_100K_GENRES))]
    scan = _dat_scan(
        path, "|",
        [("movie", "BIGINT"), ("title", "VARCHAR"), ("release_date", "VARCHAR"),
         ("video_release_date", "VARCHAR"), ("url", "VARCHAR")] + flags,
        "latin-1",
    )
    # The genre list is built column by column in SQL: no per-movie Python.
    genres = "list_filter([" + ", ".join(
        f"CASE WHEN genre_{index} = 1 THEN {sql_string(name)} END"
        for index, name in enumerate(ML_100K_GENRES)
    ) + "], lambda g: g IS NOT NULL)"
    release_year = r"nullif(regexp_extract(coalesce(release_date, ''), '(\d{4})\s*$', 1), '')"
    words = _movie_words_sql("coalesce(title, '')", genres, fallback_year=release_year)
    _create_item_text(con, path, scan, "movie", words)


def _read_labels(con, path, scan, select):
    try:
        return con.sql(
            f"SELECT {select} FROM {scan} WHERE user IS NOT NULL ORDER BY user"
        ).to_arrow_table()
    except input_files.FILE_ERRORS as error:
        raise input_files.read_error(path, error) from error


def _read_1m_users(con, folder):
    path = _file(folder, "users.dat")
    scan = _dat_scan(
        path, "::",
        [("user", "BIGINT"), ("gender", "VARCHAR"), ("age", "INTEGER"), ("occupation", "INTEGER"),
         ("zip", "VARCHAR")],
        "latin-1",
    )
    return _read_labels(
        con, path, scan, "CAST(user AS VARCHAR) AS id, gender, age, occupation"
    )


def _read_100k_users(con, folder):
    path = _file(folder, "u.user")
    scan = _dat_scan(
        path, "|",
        [("user", "BIGINT"), ("age", "INTEGER"), ("gender", "VARCHAR"), ("occupation", "VARCHAR"),
         ("zip", "VARCHAR")],
        "latin-1",
    )
    return _read_labels(
        con, path, scan, f"CAST(user AS VARCHAR) AS id, gender, {_AGE_BRACKET_SQL} AS age, occupation"
    )
