"""The one exception type for mistakes a user can cause.

A ``UserInputError`` is a bad flag, a missing or malformed file, a bad row: the
entry points print its message (one sentence naming the flag, file, column or
row) and exit non-zero, with no traceback. Anything else that escapes is our
bug and keeps its traceback.
"""


class UserInputError(Exception):
    """A problem with the user's flags or data, reported without a traceback."""
