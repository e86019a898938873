"""The platform side: one place that builds it from settings, and the services routers call.

- :mod:`.settings` — every setting, from ``MINDPRINT_*`` environment variables;
- :mod:`.service` — :func:`~.service.build_platform`: database, blockstore, keys, replay
  index, liveness model, chain;
- :mod:`.ingest` — streamed sessions: each chunk verified once on arrival and stored once.
"""
