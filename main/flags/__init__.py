"""The flags of the entry points: each script's parser, and the groups several share (``common``)."""
