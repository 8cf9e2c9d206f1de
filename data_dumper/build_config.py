"""The settings of one table build (one field per ``main/build_tables.py`` flag) and their checks.

Field names are the flag names, so an error can name the flag the user typed,
and the manifest records every field as "the flags used".
"""

import dataclasses
from typing import Optional

from contracts import schema
from data_dumper import demo_data, table_engine
from data_dumper.movielens import AUTO as MOVIELENS_AUTO
from data_dumper.movielens import LAYOUTS as MOVIELENS_LAYOUTS
from util.errors import UserInputError

DEFAULT_TARGET_FRACTION = 0.2

# Where the behaviours come from.
SOURCE_DEMO = "demo"
SOURCE_MOVIELENS = "movielens"
SOURCE_LOG = "log"


@dataclasses.dataclass
class BuildConfig:
    """Every setting of a table build; see ``main/build_tables.py`` for each flag's help."""

    output_dir: str
    overwrite: bool = False
    # Source: exactly one of demo / movielens / log (the demo when none is named).
    demo: bool = False
    seed: int = demo_data.DEFAULT_SEED
    demo_users: int = demo_data.DEFAULT_USERS
    demo_items: int = demo_data.DEFAULT_ITEMS
    movielens: Optional[str] = None
    movielens_layout: str = MOVIELENS_AUTO
    log: Optional[str] = None
    log_user_column: str = "user_id"
    log_order_column: str = "timestamp"
    log_item_column: str = "item_id"
    items: Optional[str] = None
    item_id_column: str = "item_id"
    item_text_column: Optional[str] = None
    item_tokens_column: Optional[str] = None
    item_token_separator: str = "|"
    # Windows.
    target_fraction: Optional[float] = None
    split_time: Optional[str] = None
    max_query_per_week: int = schema.DEFAULT_MAX_BEHAVIOURS
    max_words_per_query: int = schema.DEFAULT_MAX_WORDS
    target_length: int = 500
    # Item sequences (sequences/ table).
    max_items_per_user: int = 200
    # Vocabulary.
    min_count: int = 1
    max_vocabulary: Optional[int] = None
    # Output.
    num_shards: int = 4
    format: str = schema.PARQUET
    # Engine: DuckDB (one machine) or Spark (a cluster, or local[N]).
    engine: str = table_engine.DUCKDB
    spark_master: Optional[str] = None
    spark_driver_memory: Optional[str] = None
    # DuckDB.
    duckdb_memory_limit: str = "4GB"
    duckdb_temp_directory: Optional[str] = None
    duckdb_threads: Optional[int] = None

    @property
    def source(self):
        """``"log"``, ``"movielens"`` or ``"demo"`` (the default)."""
        if self.log is not None:
            return SOURCE_LOG
        if self.movielens is not None:
            return SOURCE_MOVIELENS
        return SOURCE_DEMO

    def resolved(self):
        """A checked copy with defaults filled in (the target fraction unless splitting by time)."""
        self.validate()
        config = dataclasses.replace(self)
        if config.split_time is None and config.target_fraction is None:
            config.target_fraction = DEFAULT_TARGET_FRACTION
        return config

    def validate(self):
        """Raises ``UserInputError`` naming the flag for any setting that cannot work."""
        if not self.output_dir:
            raise UserInputError("--output_dir is required: the folder to write the tables to.")
        named = [
            flag
            for flag, given in (
                ("--demo", self.demo),
                ("--movielens", self.movielens is not None),
                ("--log", self.log is not None),
            )
            if given
        ]
        if len(named) > 1:
            raise UserInputError(f"give only one source of behaviours; got {' and '.join(named)}.")
        if self.items is not None and self.source != SOURCE_LOG:
            raise UserInputError(f"--items goes with --log; it cannot be used with --{self.source}.")
        if self.items is not None:
            if (self.item_text_column is None) == (self.item_tokens_column is None):
                raise UserInputError(
                    "--items needs exactly one of --item_text_column or --item_tokens_column."
                )
        if self.movielens_layout not in (MOVIELENS_AUTO, *MOVIELENS_LAYOUTS):
            raise UserInputError(
                f"--movielens_layout={self.movielens_layout} is not one of "
                f"{MOVIELENS_AUTO}, {', '.join(MOVIELENS_LAYOUTS)}."
            )
        if self.split_time is not None and self.target_fraction is not None:
            raise UserInputError("give --target_fraction or --split_time, not both.")
        if self.target_fraction is not None and not 0.0 < self.target_fraction < 1.0:
            raise UserInputError(
                f"--target_fraction={self.target_fraction} must be between 0 and 1 (exclusive)."
            )
        if self.split_time is not None and not str(self.split_time).strip():
            raise UserInputError("--split_time is empty; give a value of the log's order column.")
        for flag in (
            "max_query_per_week", "max_words_per_query", "target_length", "min_count", "num_shards",
            "demo_users", "max_items_per_user",
        ):
            if getattr(self, flag) < 1:
                raise UserInputError(f"--{flag}={getattr(self, flag)} must be at least 1.")
        if self.demo_items < demo_data.NUM_TOPICS:
            raise UserInputError(
                f"--demo_items={self.demo_items} must be at least {demo_data.NUM_TOPICS} "
                f"(one item per demo community)."
            )
        if self.max_vocabulary is not None and self.max_vocabulary <= schema.FIRST_WORD_ID:
            raise UserInputError(
                f"--max_vocabulary={self.max_vocabulary} must be more than {schema.FIRST_WORD_ID} "
                f"(ids 0 and 1 are <pad> and <oov>)."
            )
        if self.engine not in table_engine.ENGINES:
            raise UserInputError(
                f"--engine={self.engine} is not one of {', '.join(table_engine.ENGINES)}."
            )
        if self.engine != table_engine.SPARK:
            for flag in ("spark_master", "spark_driver_memory"):
                if getattr(self, flag) is not None:
                    raise UserInputError(f"--{flag} goes with --engine=spark.")
        if self.format not in schema.FORMATS:
            raise UserInputError(f"--format={self.format} is not one of {', '.join(schema.FORMATS)}.")
        if self.duckdb_threads is not None and self.duckdb_threads < 1:
            raise UserInputError(f"--duckdb_threads={self.duckdb_threads} must be at least 1.")
        if not self.item_token_separator:
            raise UserInputError("--item_token_separator must not be empty.")

    def as_flags(self):
        """``{flag name: value}`` for the manifest."""
        return dataclasses.asdict(self)
