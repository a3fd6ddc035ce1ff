"""Replay service: streams a ratings dataset in timestamp order into Kafka."""
