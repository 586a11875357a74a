"""Training stages: ingestion, transformation and model training."""
