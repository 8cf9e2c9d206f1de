"""What the table logic asks of an engine (DuckDB or Spark); ``open_table_engine`` picks one.

The windowing, vocabulary and sequence logic (``behaviour_log``, ``vocabulary``,
``windows``, ``sequences``) is SQL text written once; an engine runs it. Both
``duckdb_session.DuckDBTables`` and ``spark_session.SparkTables`` offer:

    name, dialect                   "duckdb" / "spark" and its ``sql_dialect``
    version                         the engine's release, for the manifest
    create_table(name, sql)         materialise a query as a named table
    first_row(sql)                  the first row of a small query (a tuple, or None)
    to_arrow(sql)                   a small query's result as a pyarrow Table, in order
    scan_file(path, what)           open a user's file: a ``FileScan``
    reading(path)                   context: the engine's read failures -> UserInputError
    first_null(scan, columns)       (column, "at line 4" / "in 3 rows") of a null
    local_reader(tables)            context yielding a DuckDB connection whose
                                    ``tables`` become the engine's (the MovieLens
                                    and demo readers are DuckDB code)
    write_table_shards(rows_sql, table_schema, folder, num_shards, file_format)
                                    write one table's shard files; returns their names
"""

import dataclasses

DUCKDB = "duckdb"
SPARK = "spark"
ENGINES = (DUCKDB, SPARK)


@dataclasses.dataclass(frozen=True)
class FileScan:
    """A user's file opened by an engine.

    Attributes:
      path: the file as the user named it.
      relation: SQL to put after FROM to read it (``read_parquet('...')``, a view name).
      file_format: ``"parquet"`` or ``"csv"``.
      column_types: ``{column name: the engine's type name}``.
    """

    path: str
    relation: str
    file_format: str
    column_types: dict
