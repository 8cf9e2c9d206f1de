"""Everything that WRITES: training, inference and item-sequence tables built from
behaviour logs (DuckDB), the vocabulary and manifest beside them, demo data,
user-vector folders and their bookkeeping, projector exports."""
