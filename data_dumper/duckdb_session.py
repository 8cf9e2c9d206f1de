"""The DuckDB connection a table build runs in (bounded memory, a private scratch folder), and
``DuckDBTables``, the table engine over it.

The build's working tables live in a DuckDB database file in a fresh scratch
folder, and DuckDB spills intermediate results there too (``temp_directory``):
with both on disk, only ``memory_limit`` worth of them is held in memory at a
time, which is what lets a log larger than memory build. (An in-memory
database would keep every table in RAM.) The folder is removed afterwards.
"""

import contextlib
import os
import shutil
import tempfile

import duckdb

from data_dumper import input_files, sql_dialect, table_engine, table_writer
from data_dumper.sql import first_row, sql_string
from util.errors import UserInputError


@contextlib.contextmanager
def duckdb_connection(memory_limit="4GB", temp_directory=None, threads=None):
    """Yields a DuckDB connection whose database and scratch files live in a private folder.

    Args:
      memory_limit: DuckDB memory limit, e.g. ``"4GB"`` or ``"500MB"`` (``--duckdb_memory_limit``).
      temp_directory: folder under which the scratch folder is made, or None for the
        system's temporary folder (``--duckdb_temp_directory``).
      threads: DuckDB worker threads, or None for one per core.
    """
    if temp_directory:
        try:
            os.makedirs(temp_directory, exist_ok=True)
        except OSError as error:
            raise UserInputError(
                f"--duckdb_temp_directory={temp_directory} cannot be created: {error.strerror}."
            ) from error
    try:
        scratch = tempfile.mkdtemp(prefix="build_tables.duckdb.", dir=temp_directory or None)
    except OSError as error:
        raise UserInputError(
            f"--duckdb_temp_directory={temp_directory} is not writable: {error.strerror}."
        ) from error
    con = duckdb.connect(os.path.join(scratch, "build.duckdb"))
    try:
        try:
            con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
        except duckdb.Error as error:
            raise UserInputError(
                f"--duckdb_memory_limit={memory_limit} is not a memory size DuckDB understands "
                f"(for example 4GB or 500MB)."
            ) from error
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET temp_directory = {sql_string(scratch)}")
        # Row order is always set by ORDER BY here; not keeping insertion order
        # lets DuckDB stream and spill with less memory.
        con.execute("SET preserve_insertion_order = false")
        yield con
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)



class DuckDBTables:
    """The table engine (``table_engine``) over one DuckDB connection."""

    name = table_engine.DUCKDB
    dialect = sql_dialect.DUCKDB
    version = duckdb.__version__

    def __init__(self, con):
        self.con = con

    def create_table(self, name, sql):
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")

    def first_row(self, sql):
        return first_row(self.con, sql)

    def to_arrow(self, sql):
        return self.con.sql(sql).to_arrow_table()

    def scan_file(self, path, what):
        """Opens a local Parquet or CSV file (checked to exist and not be empty)."""
        input_files.require_file(path, what)
        file_format = input_files.detect_format(path)
        relation = input_files.scan_sql(path, file_format)
        types = input_files.column_types(self.con, relation, path)
        return table_engine.FileScan(path, relation, file_format, types)

    @contextlib.contextmanager
    def reading(self, path):
        try:
            yield
        except input_files.FILE_ERRORS as error:
            raise input_files.read_error(path, error) from error

    def first_null(self, scan, columns):
        column, where = input_files.first_null(self.con, scan.relation, columns, scan.file_format)
        return column, f"at {where}"

    @contextlib.contextmanager
    def local_reader(self, tables):
        """The DuckDB readers write straight into this connection."""
        del tables  # already where the table logic looks for them
        yield self.con

    def write_table_shards(self, rows_sql, table_schema, folder, num_shards, file_format):
        """One shard at a time, each streamed from its own query (``rows_sql(shard)``)."""
        return table_writer.write_table_shards(
            self.con, rows_sql, table_schema, folder, num_shards, file_format
        )
