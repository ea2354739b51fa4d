"""Task results over an RPC reply queue (Celery's ``rpc://`` format)."""
