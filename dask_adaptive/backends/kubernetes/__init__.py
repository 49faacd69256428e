"""The `kubernetes` backend: api.py (REST client), ranking.py (pure pod decisions), backend.py (the I/O)."""
