"""Fine-tuning a pretrained backbone on one task: backbone restore, the task step, task folders."""
