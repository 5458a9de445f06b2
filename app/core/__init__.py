"""The service's shared core: settings, persistence (``app.core.db``) and the job broker.

The API (``app.api``, ``app.web``, serving in ``app.batching`` / ``app.model_cache``) and the
worker both build on this package; it imports neither FastAPI nor the worker, so the worker
never loads the web stack.
"""
