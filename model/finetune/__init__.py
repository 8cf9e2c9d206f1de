"""Fine-tuning a pretrained item-sequence backbone on downstream tasks (PeterRec and its baselines)."""
