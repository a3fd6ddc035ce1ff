"""Adapters to Redis: the top-K cache, user states, model snapshots and live metrics."""
