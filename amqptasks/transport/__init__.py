"""AMQP transports: pika for sync code, aio-pika for async code and the worker."""
