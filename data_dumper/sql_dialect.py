"""The few places where DuckDB SQL and Spark SQL spell the same thing differently.

The table logic (``behaviour_log``, ``vocabulary``, ``windows``, ``sequences``)
is written once, as SQL text that both engines read. Most of it is common
ground: joins, ``GROUP BY``, ``row_number() OVER (...)``, ``count(*) FILTER
(WHERE ...)``, ``CAST(x AS STRING)``. What differs is isolated here, one method
per construct, so a query reads the same for both engines:

    construct                 DuckDB                          Spark SQL
    ordered list aggregate    list(v ORDER BY k)              transform(array_sort(collect_list(
                                                                named_struct('k', k, 'v', v))), s -> s.v)
    one row per element       unnest(a)                       explode(a)
    ... with its position     unnest(a), unnest(range(len(a)))  posexplode(a) AS (p, v)
    array literal / empty     [x] / CAST([] AS STRING[])      array(x) / CAST(array() AS ARRAY<STRING>)
    first n elements          list_slice(a, 1, n)             slice(a, 1, n)
    lambdas                   lambda w: w <> ''               w -> w <> ''
    string literal            'it''s' ('' doubles a quote)    'it\\'s' (backslash escapes)
    quoted name               "column"                        `column`

Type names differ too (DuckDB ``BIGINT``/``VARCHAR``, Spark ``bigint``/
``string``); each dialect says which of its types are usable ids, order keys,
texts and token lists, so the input checks are written once as well.
"""

import re

from data_dumper import input_files

# Element types the table logic declares, in each dialect's spelling.
STRING = "STRING"
INTEGER = "INTEGER"


class DuckDBDialect:
    """DuckDB's spelling (DuckDB 1.1 and newer)."""

    name = "duckdb"

    def string(self, value):
        """``value`` as a string literal: a quote is doubled."""
        return "'" + str(value).replace("'", "''") + "'"

    def name_of(self, identifier):
        """``identifier`` (a column name from a flag) as a quoted name."""
        return '"' + str(identifier).replace('"', '""') + '"'

    def ordered_list(self, value, order_key, where=None):
        """Aggregate: the group's ``value``s as a list ordered by ``order_key`` (unique per group).

        Rows failing ``where`` are left out; a group with no row left gives an
        empty list in Spark and NULL in DuckDB, so wrap it in ``coalesce`` where
        that matters.
        """
        aggregate = f"list({value} ORDER BY {order_key})"
        return aggregate if where is None else f"{aggregate} FILTER (WHERE {where})"

    def explode(self, array):
        """Select-list item: one row per element of ``array`` (aliased by the caller)."""
        return f"unnest({array})"

    def explode_with_position(self, array, position, value):
        """Select-list items: one row per element, its 0-based ``position`` and its ``value``."""
        return f"unnest({array}) AS {value}, unnest(range(len({array}))) AS {position}"

    def array_of(self, *elements):
        return "[" + ", ".join(elements) + "]"

    def empty_array(self, element_type):
        return f"CAST([] AS {element_type}[])"

    def concat_arrays(self, first, second):
        return f"list_concat({first}, {second})"

    def array_head(self, array, length):
        """The first ``length`` elements of ``array``."""
        return f"list_slice({array}, 1, {length})"

    def lambda_of(self, parameter, body):
        return f"lambda {parameter}: {body}"

    def array_filter(self, array, parameter, predicate):
        return f"list_filter({array}, {self.lambda_of(parameter, predicate)})"

    def array_transform(self, array, parameter, expression):
        return f"list_transform({array}, {self.lambda_of(parameter, expression)})"

    def array_any(self, array, parameter, predicate):
        """True when some element satisfies ``predicate``."""
        return f"len({self.array_filter(array, parameter, predicate)}) > 0"

    def regexp_split(self, text, pattern):
        """``text`` split on matches of the regular expression ``pattern`` (a Python string)."""
        return f"regexp_split_to_array({text}, {self.string(pattern)})"

    def split_on(self, text, separator):
        """``text`` split on the literal ``separator``."""
        return f"string_split({text}, {self.string(separator)})"

    def cast_to_string_array(self, expression):
        return f"CAST({expression} AS VARCHAR[])"

    # The types a log column may have, by what the column is for.
    is_id_type = staticmethod(input_files.is_id_type)
    is_order_type = staticmethod(input_files.is_order_type)
    is_string_type = staticmethod(input_files.is_string_type)
    is_token_list_type = staticmethod(input_files.is_token_list_type)


_SPARK_INTEGERS = frozenset({"tinyint", "smallint", "int", "bigint"})
_SPARK_FLOATS = frozenset({"float", "double"})


class SparkDialect(DuckDBDialect):
    """Spark SQL's spelling (Spark 4, ANSI mode on or off)."""

    name = "spark"

    def string(self, value):
        """``value`` as a string literal: Spark reads backslash escapes, so both are escaped."""
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    def name_of(self, identifier):
        return "`" + str(identifier).replace("`", "``") + "`"

    def ordered_list(self, value, order_key, where=None):
        # collect_list keeps no order of its own: sort (key, value) pairs, then
        # keep the values. The key is unique per group, so values never decide.
        pairs = f"collect_list(named_struct('k', {order_key}, 'v', {value}))"
        if where is not None:
            pairs += f" FILTER (WHERE {where})"
        return f"transform(array_sort({pairs}), s -> s.v)"

    def explode(self, array):
        return f"explode({array})"

    def explode_with_position(self, array, position, value):
        return f"posexplode({array}) AS ({position}, {value})"

    def array_of(self, *elements):
        return "array(" + ", ".join(elements) + ")"

    def empty_array(self, element_type):
        return f"CAST(array() AS ARRAY<{element_type}>)"

    def concat_arrays(self, first, second):
        return f"concat({first}, {second})"

    def array_head(self, array, length):
        return f"slice({array}, 1, {length})"

    def lambda_of(self, parameter, body):
        return f"{parameter} -> {body}"

    def array_filter(self, array, parameter, predicate):
        return f"filter({array}, {self.lambda_of(parameter, predicate)})"

    def array_transform(self, array, parameter, expression):
        return f"transform({array}, {self.lambda_of(parameter, expression)})"

    def array_any(self, array, parameter, predicate):
        return f"exists({array}, {self.lambda_of(parameter, predicate)})"

    def regexp_split(self, text, pattern):
        # Java's regular expressions read \pL and \pN as RE2 (DuckDB) does.
        return f"split({text}, {self.string(pattern)})"

    def split_on(self, text, separator):
        # Spark's split takes a regular expression: escape the separator.
        return f"split({text}, {self.string(re.escape(separator))})"

    def cast_to_string_array(self, expression):
        return f"CAST({expression} AS ARRAY<STRING>)"

    @staticmethod
    def is_id_type(spark_type):
        return spark_type in _SPARK_INTEGERS or spark_type == "string"

    @staticmethod
    def is_order_type(spark_type):
        return (
            spark_type in _SPARK_INTEGERS
            or spark_type in _SPARK_FLOATS
            or spark_type.startswith("decimal")
            or spark_type == "date"
            or spark_type.startswith("timestamp")
        )

    @staticmethod
    def is_string_type(spark_type):
        return spark_type == "string"

    @staticmethod
    def is_token_list_type(spark_type):
        if not (spark_type.startswith("array<") and spark_type.endswith(">")):
            return False
        element = spark_type[len("array<"):-1]
        return element == "string" or element in _SPARK_INTEGERS


DUCKDB = DuckDBDialect()
SPARK = SparkDialect()
