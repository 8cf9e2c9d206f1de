"""Layers shared by several families or methods: input checks, block adapters, model patches."""
