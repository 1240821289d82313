"""The conversations feature."""
