"""Storage: engines (SQLite, PostgreSQL), migrations, the event log and group commit."""
