"""The scheduler: Celery beat with one schedule, the sweep (``beat.py``)."""
