"""Human verification: authenticity, liveness, uniqueness (replay) and attention scores.

Each score is 0–1 with reasons; :mod:`.decision` folds them into accept/reject.
"""
