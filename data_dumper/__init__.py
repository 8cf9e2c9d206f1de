"""Everything that WRITES tables: SUMN training and inference tables built from
behaviour logs, the vocabulary and manifest beside them, demo data, and (later)
user-vector outputs."""
