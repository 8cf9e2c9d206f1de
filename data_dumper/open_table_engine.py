"""Opens the table engine a build's ``--engine`` names (``table_engine`` says what an engine offers)."""

import contextlib

from data_dumper.table_engine import DUCKDB, ENGINES, SPARK
from util.errors import UserInputError


@contextlib.contextmanager
def open_engine(config):
    """Yields the table engine ``config.engine`` names, set up from ``config``'s flags."""
    if config.engine == SPARK:
        # Imported here: PySpark is an optional extra, and DuckDB builds never need it.
        from data_dumper import spark_session

        with spark_session.spark_tables(config) as engine:
            yield engine
        return
    if config.engine != DUCKDB:
        raise UserInputError(f"--engine={config.engine} is not one of {', '.join(ENGINES)}.")
    from data_dumper import duckdb_session

    with duckdb_session.duckdb_connection(
        config.duckdb_memory_limit, config.duckdb_temp_directory, config.duckdb_threads
    ) as con:
        yield duckdb_session.DuckDBTables(con)
