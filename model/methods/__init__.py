"""Downstream methods: what trains, what is inserted at the block hooks, what a task stores."""
