"""The data contracts every stage reads: table folders, run folders, vector files (no TensorFlow)."""
