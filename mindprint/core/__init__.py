"""Shared types, errors, IPLD encoding and logging helpers; imports nothing else from mindprint."""
