"""The Faust trainer: consumes rating events from Kafka and feeds the online learner."""
