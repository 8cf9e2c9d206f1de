"""argparse types shared by the entry points: each rejects a bad value with a message naming it."""

import argparse
import math


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


# The largest float32: models compute in float32, where a bigger flag value is infinite.
_FLOAT32_MAX = 3.4028234663852886e38


def finite_float(text):
    """A float that is a number: argparse's ``type=float`` also accepts nan, inf and -inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"must be a finite number (at most 3.4e38 in size, float32's range), got {text}")
    return value


def non_negative_float(text):
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text):
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def probability(text):
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def boolean(text):
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"must be 0/1 or true/false, got {text}")


def layer_widths(text):
    try:
        widths = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated layer widths like 512 or 1024,512, got {text}") from None
    if any(width <= 0 for width in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text}")
    return widths


def positive_int_list(text):
    """``"1,2,4,8"`` -> ``(1, 2, 4, 8)``; at least one value, all positive."""
    try:
        values = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 1,2,4,8, got {text}")
    return values
