"""The FastAPI layer: recommendations, prequential metrics and event ingestion."""
