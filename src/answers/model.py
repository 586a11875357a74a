"""Serving-side model: loaded once from a verified artifact set; ``predict`` does no I/O."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dill
import numpy as np
import pandas as pd
import sklearn

from src import schema
from src.answers.arrays import REPORT_SCALE
from src.answers.below_cut import BelowCut, NoBelowCut, build_below_cut
from src.answers.factors import AdditiveFactors, Factors, NoFactors, build_factors
from src.answers.fast_path import PipelineScorer, Scorer, compile_scorer, random_students
from src.answers.kernels import Computed, compute, warm_up
from src.components.data_ingestion import SYNTHETIC_SOURCE
from src.signing import SigningKey
from src.storage import ArtifactError, read_manifest, sha256_bytes, verify_files
from src.store import Store
from src.validation import StudentColumns

logger = logging.getLogger(__name__)

PREPROCESSOR = "preprocessor.pkl"
MODEL = "model.pkl"
CHECK_ROWS = "check.csv"  # generated students (never student records) and the answers given at training
EXPECTED = "expected"
CHECK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Predictions:
    """Predicted math scores and their interval, reported within the target's range (0-100)."""

    scores: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    raw: np.ndarray | None = None  # the unclipped scores (what factors add up to)


@dataclass(frozen=True)
class PredictPipeline:
    """A loaded model: its manifest, the compiled scorer and the conformal interval's half-width."""

    manifest: Mapping[str, Any]
    directory: Path
    scorer: Scorer
    reference: PipelineScorer = field(repr=False)
    reference_profile: Mapping[str, Any] | None = field(default=None, repr=False)
    load_seconds: float = 0.0
    factors: Factors = field(default=NoFactors("not computed for this pipeline"), repr=False)
    below_cut: BelowCut | NoBelowCut = field(default=NoBelowCut("not computed for this pipeline"), repr=False)

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"])

    @property
    def level(self) -> float:
        return float(self.manifest["interval"]["level"])

    @property
    def half_width(self) -> float:
        return float(self.manifest["interval"]["half_width"])

    @classmethod
    def from_artifacts(cls, directory: Path | str, verified: Mapping[str, Any] | None = None) -> PredictPipeline:
        """Read and check the manifest, verify every file's sha256 and the scikit-learn version, load once.

        ``verified``: the manifest ``verify_set`` has just returned for this folder (through ``load_version``);
        its files are then not hashed a second time (the pickles still are, as they are read).
        """
        started = time.perf_counter()
        warm_up()  # the compiled arithmetic, loaded before the first student (src.answers.kernels)
        directory = Path(directory)
        manifest = dict(verified) if verified is not None else read_manifest(directory)
        _check_compatible(manifest)
        if verified is None:
            verify_files(directory, manifest)
        for name in (PREPROCESSOR, MODEL):
            if name not in manifest["files"]:
                raise ArtifactError(f"the manifest in {directory} lists no {name}")
        preprocessor = _load_pickle(directory, manifest, PREPROCESSOR)
        model = _load_pickle(directory, manifest, MODEL)
        if CHECK_ROWS not in manifest["files"]:
            raise ArtifactError(f"the manifest in {directory} lists no {CHECK_ROWS} (the load-time check)")
        check_frame = pd.read_csv(directory / CHECK_ROWS, keep_default_na=False)
        profile = None
        profile_name = manifest.get("reference_profile")
        if profile_name and profile_name in manifest["files"]:
            profile = json.loads((directory / profile_name).read_text(encoding="utf-8"))
        reference = PipelineScorer(preprocessor, model)
        try:
            scorer = compile_scorer(preprocessor, model, check_frame)
            answers = reference.score_frame(check_frame[list(schema.FEATURE_NAMES)])
        except Exception as err:  # a model that cannot even predict its check rows must not serve
            raise ArtifactError(f"the model failed its load-time check prediction: {err!r}") from err
        expected = check_frame[EXPECTED].to_numpy(dtype=float)
        worst = float(np.max(np.abs(answers - expected) / np.maximum(1.0, np.abs(expected))))
        if not worst <= CHECK_TOLERANCE:
            raise ArtifactError(
                f"the model does not give the answers it gave at training on its check rows "
                f"(worst relative difference {worst:.3g}); refusing it"
            )
        pipeline = cls(
            manifest=manifest,
            directory=directory,
            scorer=scorer,
            reference=reference,
            reference_profile=profile,
            load_seconds=time.perf_counter() - started,
            factors=build_factors(scorer, manifest),
            below_cut=build_below_cut(manifest),
        )
        logger.info(
            "loaded model %s (%s, %s scorer) from %s in %.3f s",
            pipeline.model_version,
            pipeline.model_name,
            scorer.kind,
            directory,
            pipeline.load_seconds,
        )
        return pipeline

    @property
    def trained_on_synthetic(self) -> bool:
        """True when the model never saw a real student (trained on the synthetic cohort)."""
        data = self.manifest.get("data")
        return isinstance(data, Mapping) and data.get("source") == SYNTHETIC_SOURCE

    def predict(self, students: Sequence[Mapping[str, Any]] | StudentColumns) -> Predictions:
        """Checked students (columns or records) -> their scores and 90 % ranges, computed as vectors."""
        columns = students if isinstance(students, StudentColumns) else StudentColumns.from_records(students)
        return self._predictions(self.scorer.score_columns(columns))

    def _predictions(self, raw: np.ndarray) -> Predictions:
        """Unclipped scores -> scores and 90 % ranges within the target's bounds."""
        done = self._compute(raw=raw)
        numbers = done.numbers
        return Predictions(scores=numbers[0], low=numbers[1], high=numbers[2], level=self.level, raw=done.raw)

    def answer_arrays(
        self, students: StudentColumns, cut: float | None, *, scores_only: bool = False, contributions: bool = True
    ) -> Computed:
        """Checked students -> their numbers (``src.answers.kernels.compute``): unclipped scores, the score and its
        90 % range within the target's bounds; with a ``cut``, the band of the range as reported and, with
        recorded residuals, the chance of a real score below the cut. For a model with exact factors (and
        ``contributions`` asked for) also the contributions, the background parts, the range and band without
        them, all in one compiled pass; the chance is then the scores and course alone's when ``scores_only``."""
        factors = self.factors
        if contributions and isinstance(factors, AdditiveFactors):
            return self._compute(
                students=students, additive=factors.additive, cut=cut, chance_without_background=scores_only
            )
        return self._compute(raw=self.scorer.score_columns(students), cut=cut)

    def _compute(self, *, cut: float | None = None, **given: Any) -> Computed:
        chance = cut is not None and self.below_cut.available
        return compute(
            **given,
            background_features=len(schema.BACKGROUND_FEATURES),
            half_width=self.half_width,
            minimum=schema.TARGET.minimum,
            maximum=schema.TARGET.maximum,
            cut=cut,
            residuals=self.below_cut.residuals if chance else None,  # type: ignore[union-attr]
            report_scale=REPORT_SCALE,
        )


def load_champion(store: Store, keys: Sequence[SigningKey] = ()) -> PredictPipeline:
    """The model the store's pointer names, after every check (pointer -> manifest -> signature -> files)."""
    pointer = store.champion()
    return load_version(store, pointer.model_version, keys, pointer.manifest_sha256)


def load_version(
    store: Store, version: str, keys: Sequence[SigningKey] = (), manifest_sha256: str | None = None
) -> PredictPipeline:
    """One version of the store, verified (manifest against ``manifest_sha256``, signature, files), loaded."""
    directory, manifest = store.open_verified(version, keys, manifest_sha256)
    return PredictPipeline.from_artifacts(directory, manifest)


def check_rows(preprocessor: Any, model: Any, rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """Generated students (drawn from the schema, not records) with the answers this model gives them now."""
    frame = random_students(rows, seed)
    frame[EXPECTED] = PipelineScorer(preprocessor, model).score_frame(frame[list(schema.FEATURE_NAMES)])
    return frame


def _clip(value: float) -> float:
    return min(max(value, schema.TARGET.minimum), schema.TARGET.maximum)


def _check_compatible(manifest: Mapping[str, Any]) -> None:
    trained_with = manifest.get("versions", {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise ArtifactError(
            f"artifacts were made with scikit-learn {trained_with}, but this server runs scikit-learn "
            f"{sklearn.__version__}; retrain, or install scikit-learn=={trained_with}"
        )
    if manifest.get("features") != schema.describe()["features"] or manifest.get("target") != schema.describe()["target"]:
        raise ArtifactError("artifacts were trained for different features than this server's schema; retrain")
    interval = manifest.get("interval")
    if not isinstance(interval, dict) or not {"level", "half_width"} <= interval.keys():
        raise ArtifactError("the manifest has no prediction interval (level, half_width)")


def _load_pickle(directory: Path, manifest: Mapping[str, Any], name: str) -> Any:
    path = directory / name
    data = path.read_bytes()
    # Hash the very bytes we unpickle: the file cannot change between the check and the load.
    if sha256_bytes(data) != manifest["files"][name]["sha256"]:
        raise ArtifactError(f"{name} changed while loading; refusing it")
    try:
        return dill.loads(data)
    except Exception as err:  # unpickling can fail in many ways; all mean the same here
        raise ArtifactError(f"{name} could not be loaded: {err}") from err
