"""The answering model for MLflow's "models from code": MLflow runs this file to build the model when it loads
it, so nothing is unpickled (``log_answers_model`` logs this file; it is not meant to be imported otherwise)."""

import mlflow

from src.batch.pyfunc import AnswersModel

mlflow.models.set_model(AnswersModel())
