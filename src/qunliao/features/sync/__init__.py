"""The sync feature."""
