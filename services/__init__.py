"""Runnable services around the recsys_stream core: the CLI, the trainer and the API."""
