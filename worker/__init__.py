"""Celery worker: runs training jobs from the database with `flows.train`."""
