"""Queues, exchanges and the names derived from them (no I/O here)."""
