"""Observability: metrics, the optional /metrics endpoint, and log set-up."""
