"""Apps for the Celery interop tests: a Celery app and an amqptasks app, same task names."""
