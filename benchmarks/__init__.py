"""Benchmarks: scripts that print figures (`python -m benchmarks.run [area]`), not tests."""
