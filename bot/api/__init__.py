"""The HTTP API under /api/v1 (routes.py), its tokens and audit trail (tokens.py)."""
