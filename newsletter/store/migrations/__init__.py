"""Alembic migrations of the newsletter database (run by newsletter.store.database)."""
