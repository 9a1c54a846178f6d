"""Database layer: ORM models, the async engine and migrations."""
