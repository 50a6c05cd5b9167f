"""Bytewax sources. Each emits *batches*: one item is a list of (topic, payload bytes)."""
