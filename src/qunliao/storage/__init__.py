"""Storage: engines (SQLite, PostgreSQL), migrations, the event spine and group commit."""
