"""Prometheus metrics and online drift tracking."""
