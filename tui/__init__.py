"""drdeck: a terminal console for PostgreSQL disaster recovery."""

__version__ = "0.1.0"
