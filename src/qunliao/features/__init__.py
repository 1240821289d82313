"""Features: each has api.py (thin HTTP handlers) → service.py (rules) → store.py (its own SQL)."""
