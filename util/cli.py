"""Runs an entry point's ``main`` so that user mistakes end in one clear line.

Every script in ``main/`` ends with ``run_cli(main)``. A ``UserInputError``
becomes ``error: <message>`` on stderr and exit status 2; Ctrl-C exits 130.
argparse already exits 2 with the flag named for unknown or malformed flags.
"""

import sys

from util.errors import UserInputError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(main, argv=None):
    """Calls ``main(argv)`` and turns user errors into an exit status."""
    try:
        status = main(argv)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(status or 0)
