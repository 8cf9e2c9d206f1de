"""The Spark side of a table build: the SparkSession it runs in, and ``SparkTables``, the table engine over it.

``spark_tables(config)`` reuses the active SparkSession (under ``spark-submit``,
or a notebook's) or starts one from ``--spark_master`` and
``--spark_driver_memory``, and stops only a session it started. Tables are
temporary views over persisted DataFrames (memory, spilling to the executors'
disks), so each stage's query runs once. The user's files are read by Spark
(any path or folder it can read: local, HDFS, s3a://, ...); the MovieLens and
demo readers, which are DuckDB code over local files, fill a private DuckDB
connection whose tables are handed to Spark as Arrow.

A cluster's executors need this package, pyarrow and numpy installed (pip
install it on the nodes); the driver ships the package's own code with the job
when the master is not local, so its version is always the driver's.
"""

import contextlib
import os
import re
import sys
import tempfile
import zipfile

from data_dumper import (
    duckdb_session,
    input_files,
    java_runtime,
    spark_shard_writer,
    sql_dialect,
    table_engine,
)
from util.errors import UserInputError

PYSPARK_HINT = "pip install 'universal-user-representation[spark]' (or pip install 'pyspark[sql]')"



def _import_pyspark():
    try:
        import pyspark  # noqa: F401  (only checks that it is installed)
    except ImportError as error:
        raise UserInputError(f"--engine=spark needs PySpark, which is not installed: {PYSPARK_HINT}.") \
            from error


@contextlib.contextmanager
def spark_tables(config):
    """Yields a ``SparkTables`` over the active SparkSession, or over one started for this build."""
    _import_pyspark()
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    started = session is None
    if started:
        session = start_session(config.spark_master, config.spark_driver_memory)
    engine = SparkTables(session)
    try:
        yield engine
    finally:
        engine.drop_tables()
        if started:
            session.stop()


def start_session(master=None, driver_memory=None):
    """Starts a SparkSession for table builds (outside ``spark-submit``).

    Args:
      master: the master URL (``--spark_master``), or None for Spark's default (local[*]).
      driver_memory: ``spark.driver.memory`` (``--spark_driver_memory``), or None.

    Raises:
      UserInputError: PySpark or Java is missing, or the JVM does not start.
    """
    _import_pyspark()
    reason = java_runtime.missing_java_reason()
    if reason:
        raise UserInputError(f"--engine=spark needs Java: {reason}.")
    from pyspark.sql import SparkSession

    # Spark starts its Python workers with PYSPARK_PYTHON, else the python3 on
    # PATH, which may lack pyarrow; when this process starts a local Spark (not
    # spark-submit, which set up the gateway already) they should be this Python.
    launched_here = "PYSPARK_GATEWAY_PORT" not in os.environ
    local = master is None or master.startswith("local")
    if launched_here and local and "PYSPARK_PYTHON" not in os.environ:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName("build_tables")
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        builder = builder.config("spark.ui.enabled", "false")  # no use to a build that ends by itself
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    try:
        session = builder.getOrCreate()
    except Exception as error:  # PySpark raises plain runtime errors when the JVM will not start.
        raise UserInputError(
            f"Spark did not start (--spark_master={master}, --spark_driver_memory={driver_memory}): "
            f"{_first_line(error)}"
        ) from error
    context = session.sparkContext
    local_cores = _local_cores(context.master)
    if local_cores and not context.getConf().contains("spark.sql.shuffle.partitions"):
        # Spark's 200 shuffle partitions suit a cluster; on one machine each is a
        # task of its own, and they made a small build 4x slower.
        session.conf.set("spark.sql.shuffle.partitions", str(4 * local_cores))
    if not local_cores:
        session.sparkContext.addPyFile(package_archive())
    return session


def _local_cores(master):
    """Worker threads of a local master (``local``, ``local[2]``, ``local[*]``), else None."""
    if master in ("local", "local[*]"):
        return 1 if master == "local" else os.cpu_count() or 1
    found = re.fullmatch(r"local\[(\d+)(?:,\s*\d+)?\]", master)
    return int(found.group(1)) if found else None


def package_archive():
    """A zip of this project's packages, for ``addPyFile``: the executors then run the driver's code.

    Every top-level package beside ``data_dumper`` goes (the shard writer needs
    ``data_dumper`` and ``util``; Python files only, so it is small).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    packages = [name for name in sorted(os.listdir(root))
                if os.path.isfile(os.path.join(root, name, "__init__.py"))]
    archive = os.path.join(tempfile.mkdtemp(prefix="build_tables.spark."), "build_tables.zip")
    with zipfile.ZipFile(archive, "w") as bundle:
        for package in packages:
            for folder, _, files in os.walk(os.path.join(root, package)):
                for name in files:
                    if name.endswith(".py"):
                        path = os.path.join(folder, name)
                        bundle.write(path, os.path.relpath(path, root))
    return archive


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    summary = lines[0] if lines else type(error).__name__
    return summary if len(summary) <= 400 else summary[:400] + "..."


def _is_local_path(path):
    return "://" not in path or path.startswith("file://")


def _local_part(path):
    return path[len("file://"):] if path.startswith("file://") else path


class SparkTables:
    """The table engine (``table_engine``) over a SparkSession."""

    name = table_engine.SPARK
    dialect = sql_dialect.SPARK

    def __init__(self, session):
        self.session = session
        self.version = session.version
        self._tables = {}
        self._scans = []

    def create_table(self, name, sql):
        from pyspark import StorageLevel

        frame = self.session.sql(sql).persist(StorageLevel.MEMORY_AND_DISK)
        frame.count()  # materialise now, so read errors surface here and each stage runs once
        self._replace(name, frame)

    def _replace(self, name, frame):
        previous = self._tables.pop(name, None)
        frame.createOrReplaceTempView(name)
        self._tables[name] = frame
        if previous is not None:
            previous.unpersist()

    def drop_tables(self):
        """Unpersists the build's tables and drops their views (a reused session stays clean)."""
        for name, frame in self._tables.items():
            self.session.catalog.dropTempView(name)
            frame.unpersist()
        for view in self._scans:
            self.session.catalog.dropTempView(view)
        self._tables.clear()
        self._scans.clear()

    def first_row(self, sql):
        rows = self.session.sql(sql).take(1)
        return tuple(rows[0]) if rows else None

    def to_arrow(self, sql):
        return self.session.sql(sql).toArrow()

    def scan_file(self, path, what):
        """Opens a Parquet or CSV (with a header) file or folder, by Spark, as a temporary view.

        A local file must exist and not be empty, and is told Parquet or CSV by its
        first bytes; any other path (a folder, ``s3a://...``) is CSV when its name
        ends in ``.csv`` (``.csv.gz``, ...), else Parquet.
        """
        from pyspark.errors import AnalysisException

        local = _local_part(path) if _is_local_path(path) else None
        if local is not None and not os.path.exists(local):
            raise UserInputError(f"{what} {path} does not exist.")
        if local is not None and os.path.isfile(local):
            input_files.require_file(local, what)
            file_format = input_files.detect_format(local)
        else:
            file_format = "csv" if ".csv" in os.path.basename(path.rstrip("/")).lower() else "parquet"
        try:
            if file_format == "csv":
                # FAILFAST: a value that does not fit the inferred type is an error, not a null.
                frame = self.session.read.options(header=True, inferSchema=True, mode="FAILFAST").csv(path)
            else:
                frame = self.session.read.parquet(path)
        except AnalysisException as error:
            if "PATH_NOT_FOUND" in str(error):
                raise UserInputError(f"{what} {path} does not exist.") from error
            raise UserInputError(f"could not read {path}: {_first_line(error)}") from error
        except Exception as error:  # Spark reports unreadable files as plain Py4J/Spark errors.
            raise UserInputError(f"could not read {path}: {_first_line(error)}") from error
        if not frame.columns:
            raise UserInputError(f"{what} {path} is empty.")
        view = f"scan_{len(self._scans)}"
        frame.createOrReplaceTempView(view)
        self._scans.append(view)
        types = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
        return table_engine.FileScan(path, view, file_format, types)

    @contextlib.contextmanager
    def reading(self, path):
        """Spark reads lazily: failures of a query over ``path`` become one line naming it."""
        from pyspark.errors import AnalysisException

        try:
            yield
        except AnalysisException:
            raise  # a query that does not resolve is our bug, not the file's
        except Exception as error:  # Py4JJavaError and PySpark's captured Spark errors
            raise UserInputError(f"could not read {path}: {_first_line(error)}") from error

    def first_null(self, scan, columns):
        """The first of ``columns`` holding nulls, and how many (Spark rows have no stable line)."""
        dialect = self.dialect
        counts = self.first_row(
            "SELECT " + ", ".join(
                f"count(*) FILTER (WHERE {dialect.name_of(column)} IS NULL)" for column in columns
            ) + f" FROM {scan.relation}"
        )
        for column, count in zip(columns, counts):
            if count:
                return column, f"in {count:,} of its rows"
        return None

    @contextlib.contextmanager
    def local_reader(self, tables):
        """Yields a private DuckDB connection; its ``tables`` then become Spark tables (via Arrow)."""
        with duckdb_session.duckdb_connection() as con:
            yield con
            for name in tables:
                arrow = con.sql(f"SELECT * FROM {name}").to_arrow_table()
                self._replace(name, self.session.createDataFrame(arrow).persist())

    def write_table_shards(self, rows_sql, table_schema, folder, num_shards, file_format):
        """Every shard from one query (``rows_sql(None)``), one task per shard."""
        return spark_shard_writer.write_table_shards(
            self.session, rows_sql(None), table_schema, folder, num_shards, file_format
        )
