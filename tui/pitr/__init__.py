"""Point-in-time recovery: base backups, the recoverable window, guided restores."""
