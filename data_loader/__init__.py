"""Everything that READS: Parquet (pyarrow) and TFRecord readers that yield identical
batches, sharded by ``tf.distribute.InputContext``; the pretraining inputs of each
table kind; labels, user vectors and bags of words for evaluation and fine-tuning."""
