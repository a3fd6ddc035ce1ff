"""recsys-stream: a streaming, online-learning recommender.

The core package knows nothing of Kafka, Redis or HTTP: it holds the data layer, the event
schema, the model, the online learner, evaluation and retrieval. Adapters live at the edges
(``replay``, ``services.trainer``, ``services.api``).
"""

__version__ = "0.1.0"
