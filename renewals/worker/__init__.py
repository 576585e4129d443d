"""The worker: the Celery application and its thin tasks."""
