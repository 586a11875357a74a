"""Student math-score prediction service: training, artifacts and serving."""
