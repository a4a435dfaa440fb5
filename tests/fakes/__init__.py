"""Test doubles that speak the real protocols: an HTTP server on 127.0.0.1 with programmable faults,
and fake ``codex`` / ``gh`` / ``security`` / ``claude`` executables for PATH."""
