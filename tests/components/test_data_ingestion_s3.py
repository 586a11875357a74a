from src.components.data_ingestion import DataIngestion, DataIngestionConfig
from src.synthetic import generate_students


def test_reads_s3_through_the_standard_endpoint_setting(s3_env, tmp_path):
    s3_env.create_bucket(Bucket="school-data")
    s3_env.put_object(
        Bucket="school-data", Key="cohorts/2026.csv", Body=generate_students(90, seed=3).to_csv(index=False).encode()
    )
    out = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, source="s3://school-data/cohorts/2026.csv")).run()
    assert out.rows_valid == 90 and out.source == "s3://school-data/cohorts/2026.csv"
