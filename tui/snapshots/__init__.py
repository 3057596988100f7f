"""Logical snapshots: pg_dump -> gpg -> repository, and back."""
