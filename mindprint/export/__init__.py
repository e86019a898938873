"""Researcher exports: MNE-readable session files, BIDS (later), provenance sidecars."""
