"""Everything that READS tables into tf.data: Parquet (pyarrow) and TFRecord readers
that yield identical batches, sharded by ``tf.distribute.InputContext``."""
