"""The engine: runs a runbook's steps and emits one stream of typed events."""
