"""Scoring whole cohorts from files: the local and Spark engines, and the MLflow answering model."""
