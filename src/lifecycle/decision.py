"""The one decision about what serves: quality gate, challenger against champion, then the pointer moves.

Every path that can change the served model comes through here: training (``train_pipeline``), retraining
(``retrain``), publishing a local version to S3 (``publish``), and moves by hand (``promote``). First the data's
provenance (the manifest's ``data``: source, fingerprint, synthetic or not, population): a model of other students
(synthetic against a real champion, or another population) never replaces the champion unless a person promotes it
by hand with ``other_population``. Then the decision re-scores the current champion on the candidate's held-out
students and on the champion's own (read from the training-runs folder), each without the students the other model
trained on, so the two are compared on the same unseen students twice. When MLflow tracking is on, the registry's
``champion`` alias moves in the same step as the pointer (and the pointer is put back if the alias cannot move).
Each decision is recorded in the store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from src.answers.model import PredictPipeline, load_version
from src.components.data_ingestion import SYNTHETIC_SOURCE
from src.components.group_metrics import DEFAULT_GROUP_TOLERANCE, group_check
from src.schema import COLUMNS, FEATURE_NAMES, TARGET
from src.signing import SigningKey
from src.storage import MANIFEST_NAME, ArtifactError, DataSourceError, sha256_file
from src.store import Pointer, Store, StoreError, check_version, now_iso

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.01  # R² points a challenger may lose against the champion and still replace it
DEFAULT_KEEP_VERSIONS = 10
SYNTHETIC_POPULATION = "synthetic"  # the population of the synthetic cohort, and of no real data
DEFAULT_POPULATION = "students"  # real data trained without --population
POPULATION_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
TEST_SPLIT = "test.csv"  # a run's held-out students, in <runs>/<version>/
TRAIN_SPLIT = "train.csv"


class ProvenanceError(StoreError):
    """A model of other students would replace the champion without a person saying so."""


@dataclass(frozen=True)
class Provenance:
    """Where a set's training data came from, read from its manifest's ``data`` section."""

    source: str
    fingerprint: str | None
    synthetic: bool
    population: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> Provenance:
        data = manifest.get("data")
        data = data if isinstance(data, Mapping) else {}
        source = str(data.get("source", "unknown"))
        synthetic = bool(data.get("synthetic", source == SYNTHETIC_SOURCE))  # sets made before the field
        population = data.get("population") or (SYNTHETIC_POPULATION if synthetic else DEFAULT_POPULATION)
        return cls(source, data.get("fingerprint"), synthetic, str(population))

    def describe(self) -> str:
        if self.synthetic:
            return "synthetic students"
        name = self.source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]  # the file name only, as /model shows it
        return f"real students of population '{self.population}' ({name})"


def check_population(population: str, synthetic: bool) -> str:
    """The population tag a training records: the synthetic cohort's own, or a checked tag for real data."""
    if synthetic:
        if population not in ("", SYNTHETIC_POPULATION):
            raise ValueError(f"population: the synthetic cohort is always '{SYNTHETIC_POPULATION}', not '{population}'")
        return SYNTHETIC_POPULATION
    population = population or DEFAULT_POPULATION
    if population == SYNTHETIC_POPULATION or not POPULATION_PATTERN.fullmatch(population):
        raise ValueError(
            f"population: '{population}' must be lower-case letters, digits, '.', '_' or '-' (at most 64) "
            f"and not '{SYNTHETIC_POPULATION}', which names the synthetic cohort"
        )
    return population


def population_refusal(candidate: Provenance, champion: Provenance, version: str, champion_version: str) -> str | None:
    """Why the candidate is a model of other students than the champion's (None: the same population)."""
    if champion.synthetic:
        return None  # a synthetic champion is a placeholder: any model that passes the gate may take its place
    if candidate.synthetic:
        why = (
            f"candidate {version} was trained on synthetic students, the champion {champion_version} on "
            f"{champion.describe()}"
        )
    elif candidate.population != champion.population:
        why = (
            f"candidate {version} was trained on {candidate.describe()}, the champion {champion_version} on "
            f"{champion.describe()}"
        )
    else:
        return None
    return (
        f"{why}: a model of other students replaces it only by hand "
        f"(python -m src.pipeline.promote --version {version} --other-population)"
    )


def held_out(runs_dir: Path | None, version: str, split: str = TEST_SPLIT) -> pd.DataFrame | None:
    """A version's held-out students (or training students), from its run's records; None when not kept here."""
    if runs_dir is None:
        return None
    path = Path(runs_dir) / check_version(version) / split
    if not path.is_file():
        return None
    return pd.read_csv(path, keep_default_na=False)


def unseen_by(test: pd.DataFrame, train: pd.DataFrame | None) -> pd.DataFrame:
    """The students of ``test`` that are not in ``train`` (the same values in every column)."""
    if train is None or train.empty:
        return test
    columns = [c for c in COLUMNS if c in test.columns and c in train.columns]
    key = test[columns].astype(str).agg("\x1f".join, axis=1)
    seen = set(train[columns].astype(str).agg("\x1f".join, axis=1))
    return test[~key.isin(seen)].reset_index(drop=True)


class Registry(Protocol):
    """Where a model registry follows the store (MLflow's ``champion`` alias); see ``tracking.MlflowRegistry``."""

    def moved(self, version: str, reason: str) -> None: ...

    def kept(self, version: str, reason: str) -> None: ...


@dataclass(frozen=True)
class DecisionConfig:
    min_test_r2: float = 0.6  # the quality gate: a candidate below it never serves
    tolerance: float = DEFAULT_TOLERANCE
    keep_versions: int = DEFAULT_KEEP_VERSIONS  # sets kept in the store (the champion and the previous always)
    group_tolerance: float | None = DEFAULT_GROUP_TOLERANCE  # worst group's MAE vs the champion's (None: off)
    experiment: bool = False  # decide and report, but never move the pointer (dvc exp run, mlflow run)


@dataclass(frozen=True)
class Decision:
    action: str  # promoted, kept, refused (the candidate failed the quality gate)
    version: str  # the candidate
    champion: str | None  # what serves after the decision
    reason: str

    @property
    def promoted(self) -> bool:
        return self.action == "promoted"

    def line(self) -> str:
        if self.promoted:
            return f"promoted {self.version}: {self.reason}"
        return f"kept {self.champion or 'no champion'}: {self.reason}"


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y, predicted))


def predicted_on(pipeline: PredictPipeline, test: pd.DataFrame) -> np.ndarray:
    """A loaded model's predictions for a test split, through the scikit-learn pipeline itself."""
    return pipeline.reference.score_frame(test[list(FEATURE_NAMES)])


def score_on(pipeline: PredictPipeline, test: pd.DataFrame, predicted: np.ndarray | None = None) -> float:
    """Test R² of a loaded model on a test split (``predicted``: its predictions, when already made)."""
    predicted = predicted_on(pipeline, test) if predicted is None else predicted
    return r2(test[TARGET.name].to_numpy(dtype=float), predicted)


def groups_on(pipeline: PredictPipeline, test: pd.DataFrame, predicted: np.ndarray | None = None) -> dict:
    """Errors by student group of a loaded model on a test split (count, MAE, bias, coverage)."""
    from src.components.group_metrics import group_metrics  # training side only (Fairlearn)

    predicted = predicted_on(pipeline, test) if predicted is None else predicted
    return group_metrics(test, test[TARGET.name].to_numpy(dtype=float), predicted, pipeline.half_width)


def decide(
    store: Store,
    version: str,
    test: pd.DataFrame,
    config: DecisionConfig = DecisionConfig(),
    *,
    keys: Sequence[SigningKey] = (),
    registry: Registry | None = None,
    trigger: str | None = None,
    runs_dir: Path | None = None,
) -> Decision:
    """Decide whether the candidate ``version`` (already in the store) replaces the champion, and apply it.

    ``test`` is the candidate's held-out students; ``runs_dir`` (the training-runs folder) holds the champion's
    (``<champion>/test.csv``) and the candidate's training students, which are left out of the champion's split.
    ``trigger`` (why the candidate was trained, e.g. retrain's reason) is kept in the decision record.
    """
    version = check_version(version)
    candidate = load_version(store, version, keys)
    pointer, before = store.pointer_and_bytes()
    champion_version = pointer.model_version if pointer else None
    new_predicted = predicted_on(candidate, test)
    new_r2 = score_on(candidate, test, new_predicted)
    if new_r2 < config.min_test_r2:
        decision = Decision(
            "refused",
            version,
            champion_version,
            f"candidate {version} reached test R2 {new_r2:.4f}, below the quality gate of {config.min_test_r2:.4f}",
        )
        _record(store, decision, new_r2, None, trigger=trigger)
        return decision
    old_r2 = None
    if pointer is None:
        promote, reason = True, f"first model in the store (test R2 {new_r2:.4f})"
    elif pointer.model_version == version:
        promote, reason = False, f"{version} is already the champion"
    else:
        try:
            _, champion_manifest = store.open_verified(pointer.model_version, keys, pointer.manifest_sha256)
        except (ArtifactError, OSError, ValueError):
            champion_manifest = None  # the load below says why
        refusal = (
            population_refusal(
                Provenance.of(candidate.manifest), Provenance.of(champion_manifest), version, pointer.model_version
            )
            if champion_manifest is not None
            else None
        )
        try:
            champion = load_version(store, pointer.model_version, keys, pointer.manifest_sha256)
        except (ArtifactError, OSError, ValueError) as err:
            champion = None
            promote = True
            reason = (
                f"test R2 {new_r2:.4f}; the champion {pointer.model_version} cannot be loaded to compare "
                f"({err}): replacing it"
            )
        if refusal is not None:
            promote, reason = False, refusal
        elif champion is not None and Provenance.of(champion.manifest).synthetic and not candidate.trained_on_synthetic:
            promote = True
            reason = (
                f"test R2 {new_r2:.4f}; the champion {pointer.model_version} was trained on synthetic students: "
                "real students replace it"
            )
        elif champion is not None:
            # Each model is judged on students neither trained on: the candidate's held-out students without the
            # champion's training students, and the champion's held-out students without the candidate's.
            ours = unseen_by(test, held_out(runs_dir, pointer.model_version, TRAIN_SPLIT))
            theirs = held_out(runs_dir, pointer.model_version)
            if len(ours) < 2:
                ours = test  # the champion trained on all of them: compared as they are, and the reason says so
            new_predicted = predicted_on(candidate, ours)
            new_r2 = score_on(candidate, ours, new_predicted)
            old_predicted = predicted_on(champion, ours)
            old_r2 = score_on(champion, ours, old_predicted)
            promote = new_r2 >= old_r2 - config.tolerance
            reason = (
                f"test R2 {new_r2:.4f} vs champion {pointer.model_version} {old_r2:.4f} on the candidate's "
                f"{len(ours)} held-out students"
            )
            if theirs is None:
                reason += (
                    f" (the champion's run records are not in {runs_dir or 'a training-runs folder'}: compared on "
                    "the candidate's students alone)"
                )
            else:
                theirs = unseen_by(theirs, held_out(runs_dir, version, TRAIN_SPLIT))
                if len(theirs) < 2:
                    reason += " (all the champion's held-out students were in the candidate's training data)"
                else:
                    new_on_theirs, old_on_theirs = score_on(candidate, theirs), score_on(champion, theirs)
                    promote = promote and new_on_theirs >= old_on_theirs - config.tolerance
                    reason += f", {new_on_theirs:.4f} vs {old_on_theirs:.4f} on the champion's {len(theirs)}"
                reason += " (students neither model trained on)"
            verb = ("would replace" if config.experiment else "replaces") if promote else "does not replace"
            reason += f" (tolerance {config.tolerance}): {verb} it"
            if promote and config.group_tolerance is not None:
                group_refusal = group_check(
                    groups_on(candidate, ours, new_predicted),
                    groups_on(champion, ours, old_predicted),
                    config.group_tolerance,
                )
                if group_refusal is not None:
                    promote, reason = False, f"{reason}, but per group: {group_refusal}: does not replace it"
    if promote and config.experiment:
        promote = False
        reason = (
            f"{reason}; an experiment never moves the champion: promote it by hand with "
            f"python -m src.pipeline.promote --store {store.location} --version {version}"
        )
    if promote:
        manifest_sha256 = _manifest_sha256(store, version)
        moved = (
            pointer.moved_to(version, manifest_sha256, "promoted", reason)
            if pointer
            else Pointer(version, manifest_sha256, now_iso(), "promoted", reason)
        )
        _move(store, moved, before, registry, reason)
        decision = Decision("promoted", version, version, reason)
    else:
        if registry is not None:
            registry.kept(version, reason)
        decision = Decision("kept", version, champion_version, reason)
    _record(store, decision, new_r2, old_r2, trigger=trigger)
    store.prune(config.keep_versions)
    return decision


def promote_by_hand(
    store: Store,
    version: str,
    *,
    keys: Sequence[SigningKey] = (),
    registry: Registry | None = None,
    other_population: bool = False,
) -> Decision:
    """Make a verified ``version`` the champion without comparing (an operator's decision).

    A model of other students than the champion's (synthetic, or another population) is refused unless
    ``other_population`` says the person means it.
    """
    version = check_version(version)
    if version not in store.versions():
        raise StoreError(f"{store.location} has no model version {version}; it has: {', '.join(store.versions())}")
    candidate = load_version(store, version, keys)  # a set that fails verification or cannot load never serves
    pointer, before = store.pointer_and_bytes()
    reason = "promoted by hand"
    if pointer is not None and pointer.model_version != version:
        try:
            _, champion_manifest = store.open_verified(pointer.model_version, keys, pointer.manifest_sha256)
        except (ArtifactError, OSError, ValueError):
            champion_manifest = None  # a champion that cannot be read is no population to keep
        refusal = (
            population_refusal(
                Provenance.of(candidate.manifest), Provenance.of(champion_manifest), version, pointer.model_version
            )
            if champion_manifest is not None
            else None
        )
        if refusal is not None and not other_population:
            raise ProvenanceError(refusal)
        if refusal is not None:
            reason = f"promoted by hand, a model of other students ({Provenance.of(candidate.manifest).describe()})"
    manifest_sha256 = _manifest_sha256(store, version)
    moved = (
        pointer.moved_to(version, manifest_sha256, "promoted by hand", reason)
        if pointer
        else Pointer(version, manifest_sha256, now_iso(), "promoted by hand", reason)
    )
    _move(store, moved, before, registry, reason)
    decision = Decision("promoted", version, version, reason)
    _record(store, decision, None, None, action="promoted by hand")
    return decision


def rollback(store: Store, *, keys: Sequence[SigningKey] = (), registry: Registry | None = None) -> Decision:
    """Give the pointer back to the previous champion (verified first)."""
    pointer, before = store.pointer_and_bytes()
    if pointer is None:
        pointer = store.champion()  # raises: no champion yet
    if not pointer.previous:
        raise StoreError(f"{store.location} has no earlier champion to roll back to")
    target = pointer.previous[-1]
    load_version(store, target, keys)
    reason = f"rolled back from {pointer.model_version}"
    moved = Pointer(target, _manifest_sha256(store, target), now_iso(), "rollback", reason, pointer.previous[:-1])
    _move(store, moved, before, registry, reason)
    decision = Decision("promoted", target, target, reason)
    _record(store, decision, None, None, action="rollback")
    return decision


def _manifest_sha256(store: Store, version: str) -> str:
    return sha256_file(store.set_dir(version) / MANIFEST_NAME)


def _move(store: Store, pointer: Pointer, before: bytes | None, registry: Registry | None, reason: str) -> None:
    """Move the pointer, then the registry's alias; if the alias cannot move, put the pointer back."""
    store.write_pointer(pointer)
    if registry is None:
        return
    try:
        registry.moved(pointer.model_version, reason)
    except BaseException:
        store.restore_pointer(before)
        logger.error("the registry could not follow %s; the pointer is back where it was", pointer.model_version)
        raise


def _record(
    store: Store,
    decision: Decision,
    new_r2: float | None,
    old_r2: float | None,
    action: str | None = None,
    trigger: str | None = None,
) -> None:
    record: dict[str, Any] = {
        "at": now_iso(),
        "version": decision.version,
        "decision": action or decision.action,
        "champion": decision.champion,
        "reason": decision.reason,
        "candidate_test_r2": new_r2,
        "champion_test_r2_same_split": old_r2,  # both on the candidate's held-out students
    }
    if trigger is not None:
        record["trigger"] = trigger
    try:
        store.write_decision(record)
    except (OSError, ArtifactError, DataSourceError) as err:  # the record is a log: losing it must not undo the decision
        logger.warning("could not record the decision in %s: %s", store.location, err)
    logger.info("decision on %s: %s", decision.version, decision.line())
