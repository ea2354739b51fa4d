"""The wire format: Celery message protocol v2, serializers and compression.

Nothing in this package does I/O.
"""
