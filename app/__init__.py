"""The efnf HTTP service: FastAPI front end, persistence and model serving around `flows`."""
