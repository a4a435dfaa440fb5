"""Persistence: the SQLite store and the single writer that group-commits to it."""
