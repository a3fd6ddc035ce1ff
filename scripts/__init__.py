"""Developer tooling of recsys-stream: test services (``python -m scripts.test_services``)."""
