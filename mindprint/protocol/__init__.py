"""What the edge and the platform share: the signed formats and the upload wire format.

Imported by the companion (edge), by the platform and by ``mindprint verify``; it must
never import the server stack (SQLAlchemy, FastAPI) — a test asserts it.
"""
