"""Scoring whole cohorts from files: the local and Spark engines, and the MLflow answering model.

The options' closed sets live here, without imports, so that ``batch_predict --help`` answers before pandas,
Arrow or the model code are loaded.
"""

ENGINES = ("local", "spark")
FORMATS = ("csv", "parquet")
DEFAULT_CHUNK_ROWS = 100_000  # --chunk-rows: rows read and scored at a time by the local engine
