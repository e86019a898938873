"""The contributor's companion (edge side): platform client, chunk streaming, labeling runs.

Never imports the server stack (SQLAlchemy, FastAPI); what it shares with the platform
lives in :mod:`mindprint.protocol`.
"""
