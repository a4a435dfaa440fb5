"""Passive ingest of what harnesses write anyway: Claude Code transcripts and Codex rollouts.

``claude`` and ``codex`` are pure parsers (bytes of one line in, a call or nothing out); ``scanner``
follows the folders incrementally (file identity and offset kept in the store) and feeds the ledger.
"""
