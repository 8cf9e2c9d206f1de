"""Small helpers shared by every stage: errors, atomic writes, run-folder JSON, distribution."""
