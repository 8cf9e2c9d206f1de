"""The tsv layout of user vectors (SUMN's): one user per line, ``id<separator>v1,...,vd<separator>length``.

``data_dumper/user_vector_writer.py`` writes it and ``data_loader/user_vectors.py``
reads it; both accept a ``--separator`` only where ``separator_problem`` finds
none, so every line written splits back into exactly its three fields.
"""

# What the number fields can hold: float32 values as pyarrow prints them
# ("-0.5", "1e-7", "1e+20", "nan", "inf"), comma-joined, and the integer
# length. A separator holding any of these characters could be found inside
# (or straddling the edge of) a number field, so the line would not split back.
NUMBER_CHARACTERS = frozenset("0123456789.,+-eEnNaAiIfF")
TAB_SPELLINGS = ("\\t", "tab")  # what a shell user types for a tab


def parse_separator(text):
    """The separator ``--separator`` names: ``\\t`` and ``tab`` mean a tab character."""
    return "\t" if text in TAB_SPELLINGS else text


def separator_problem(separator):
    """Why ``separator`` cannot separate the fields of a tsv line, or None where it can."""
    if not separator:
        return "it is empty"
    if "\n" in separator or "\r" in separator:
        return "it holds a line break, which ends a line"
    clashing = sorted(set(separator) & NUMBER_CHARACTERS)
    if clashing:
        return (f"it holds {', '.join(repr(c) for c in clashing)}, which can occur inside the "
                f"comma-joined numbers of the vector or the length (digits . , + - e and the "
                f"letters of nan and inf); use a tab, a space, '|' or ';'")
    return None
