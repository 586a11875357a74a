"""Ingestion: read the students, validate every row by the schema, split train/test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from src.schema import COLUMNS
from src.storage import atomic_write_bytes, read_csv_text, read_source_bytes, sha256_bytes
from src.synthetic import generate_students
from src.validation import record_lines, validate_frame

logger = logging.getLogger(__name__)

SYNTHETIC_SOURCE = "synthetic"
REJECTED = "rejected.csv"


class IngestionError(RuntimeError):
    """The data cannot be trained on (too few valid rows, too many rejected)."""


@dataclass(frozen=True)
class DataIngestionConfig:
    artifacts_dir: Path
    source: str = SYNTHETIC_SOURCE  # a path, an http(s) URL, s3://bucket/key, or "synthetic"
    synthetic_rows: int = 1000
    test_size: float = 0.2
    seed: int = 42
    min_valid_rows: int = 50
    max_rejected_share: float = 0.2


@dataclass(frozen=True)
class DataIngestionArtifact:
    raw_path: Path
    train_path: Path
    test_path: Path
    rejected_path: Path
    source: str
    rows_read: int
    rows_valid: int
    rows_rejected: int
    fingerprint: str  # sha256 of raw.csv: the exact data this run trained on
    train: pd.DataFrame
    test: pd.DataFrame


def canonical_bytes(valid: pd.DataFrame) -> bytes:
    """The valid rows as training sees them: the schema's columns in order, as CSV; their sha256 is the fingerprint."""
    return valid[list(COLUMNS)].to_csv(index=False).encode("utf-8")


def data_fingerprint(config: DataIngestionConfig) -> tuple[str, int]:
    """The fingerprint training would record for this source, and its number of valid rows, without training."""
    frame, _ = DataIngestion(config)._read()
    valid, _ = validate_frame(frame)
    return sha256_bytes(canonical_bytes(valid)), len(valid)


class DataIngestion:
    """Read a CSV (either header style) or the synthetic cohort; keep valid rows, report the others."""

    def __init__(self, config: DataIngestionConfig) -> None:
        self.config = config

    def run(self) -> DataIngestionArtifact:
        cfg = self.config
        raw_text, lines = self._read()
        valid, rejected = validate_frame(raw_text, lines)
        out = cfg.artifacts_dir
        rejected_path = out / REJECTED
        atomic_write_bytes(rejected_path, rejected.to_csv(index=False).encode("utf-8"))
        read, kept = len(raw_text), len(valid)
        logger.info("read %d rows from %s: %d valid, %d rejected", read, cfg.source, kept, len(rejected))
        if read and len(rejected) / read > cfg.max_rejected_share:
            raise IngestionError(
                f"{len(rejected)} of {read} rows ({len(rejected) / read:.0%}) broke the schema, more than the "
                f"allowed {cfg.max_rejected_share:.0%}; each rejected row and its reason is in {REJECTED}"
            )
        if kept < cfg.min_valid_rows:
            raise IngestionError(
                f"only {kept} valid rows in {cfg.source}; at least {cfg.min_valid_rows} are needed to train"
            )

        raw_bytes = canonical_bytes(valid)
        raw_path = out / "raw.csv"
        atomic_write_bytes(raw_path, raw_bytes)
        train, test = train_test_split(valid, test_size=cfg.test_size, random_state=cfg.seed)
        train, test = train.reset_index(drop=True), test.reset_index(drop=True)
        train_path, test_path = out / "train.csv", out / "test.csv"
        atomic_write_bytes(train_path, train.to_csv(index=False).encode("utf-8"))
        atomic_write_bytes(test_path, test.to_csv(index=False).encode("utf-8"))
        return DataIngestionArtifact(
            raw_path=raw_path,
            train_path=train_path,
            test_path=test_path,
            rejected_path=rejected_path,
            source=cfg.source,
            rows_read=read,
            rows_valid=kept,
            rows_rejected=len(rejected),
            fingerprint=sha256_bytes(raw_bytes),
            train=train,
            test=test,
        )

    def _read(self) -> tuple[pd.DataFrame, list[int] | None]:
        """The rows as text, and the file line each starts on (for rejected.csv)."""
        cfg = self.config
        if cfg.source == SYNTHETIC_SOURCE:
            students = generate_students(cfg.synthetic_rows, seed=cfg.seed)
            return students.astype(str), None
        data = read_source_bytes(cfg.source)
        return read_csv_text(data, cfg.source), record_lines(data)
