"""Small helpers for the SQL the table builder sends to DuckDB: quoting and one-row look-ups.

Column names and paths come from flags, so they are always quoted, never pasted raw.
"""


def sql_string(value):
    """``value`` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_name(name):
    """``name`` as a quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def first_row(con, sql, parameters=None):
    """The first row of a query's result (None if it has none), with the result consumed.

    DuckDB refuses new work on a connection while an ``execute()`` result is
    unfinished, so single-row look-ups fetch everything (one row, or a few).
    """
    result = con.execute(sql, parameters) if parameters else con.execute(sql)
    rows = result.fetchall()
    return rows[0] if rows else None
