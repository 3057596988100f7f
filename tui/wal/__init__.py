"""The WAL archive: push and fetch segments, read its contents, find the recoverable window."""
