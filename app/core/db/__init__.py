"""Persistence: SQLAlchemy models, engines and sessions, and the queries the service needs."""
