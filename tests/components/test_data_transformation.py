import dill
import numpy as np
import pandas as pd

from src.components.data_ingestion import DataIngestion, DataIngestionConfig
from src.components.data_transformation import DataTransformation, DataTransformationConfig
from src.schema import FEATURE_NAMES


def test_preprocessor_is_saved_with_dill_and_handles_unknown_categories(tmp_path):
    ingested = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, synthetic_rows=150)).run()
    out = DataTransformation(DataTransformationConfig(artifacts_dir=tmp_path)).run(ingested)
    assert out.x_train.shape == (120, 2 + 2 + 5 + 6 + 2 + 2)
    assert np.allclose(out.x_train[:, :2].mean(axis=0), 0) and len(out.y_test) == 30
    loaded = dill.loads(out.preprocessor_path.read_bytes())
    row = ingested.test[list(FEATURE_NAMES)].head(1).copy()
    assert np.allclose(loaded.transform(row), out.x_test[:1])
    row["gender"] = "unseen"
    assert np.asarray(loaded.transform(row))[0, 2:4].tolist() == [0.0, 0.0]
    assert isinstance(out.test_frame, pd.DataFrame)
