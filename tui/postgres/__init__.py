"""Local PostgreSQL clusters: finding the server programs and driving initdb and pg_ctl."""
