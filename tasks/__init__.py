"""Celery adapters: each task parses ids, calls a plain function and records the run."""
