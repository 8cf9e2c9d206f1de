"""Arrow arrays as the flat buffers TensorFlow's ragged tensors are built from.

Shared by the SUMN table reader and the item-sequence reader: every helper
works on whole columns with pyarrow compute and numpy, never per row.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def row_splits(list_array):
    """Offsets of a (possibly sliced) list array, rebased to start at 0: [n + 1] int64."""
    lengths = pc.list_value_length(list_array).fill_null(0).to_numpy(zero_copy_only=False)
    splits = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=splits[1:])
    return splits


def flat_values(list_array, dtype=np.int32):
    """The values of a (possibly sliced) list array, flattened: [total values] ``dtype``."""
    return pc.list_flatten(list_array).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def string_parts(string_array):
    """A string array as (all bytes as one scalar, [n + 1] int64 offsets), no per-row Python."""
    string_array = pc.cast(string_array, pa.large_string())
    offsets = np.frombuffer(string_array.buffers()[1], dtype=np.int64)
    offsets = offsets[string_array.offset:string_array.offset + len(string_array) + 1]
    data = string_array.buffers()[2]
    blob = b"" if data is None else data.to_pybytes()[offsets[0]:offsets[-1]]
    return np.asarray(blob, dtype=object), offsets - offsets[0]
