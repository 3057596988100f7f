"""Real services for tests: throwaway PostgreSQL clusters, GnuPG homes and an S3 server.

Each helper is a context manager usable outside pytest too (benchmarks,
scripts); tests/conftest.py wraps them as fixtures.
"""
