"""The one decision about what serves: quality gate, challenger against champion, then the pointer moves.

Every path that can change the served model comes through here: training (``train_pipeline``), retraining
(``retrain``), publishing a local version to S3 (``publish``), and moves by hand (``promote``). The decision
re-scores the current champion on the candidate's test split, so the two are compared on the same students;
when MLflow tracking is on, the registry's ``champion`` alias moves in the same step as the pointer (and the
pointer is put back if the alias cannot move). Each decision is recorded in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from src.answers.model import PredictPipeline, load_version
from src.components.group_metrics import DEFAULT_GROUP_TOLERANCE, group_check
from src.schema import FEATURE_NAMES, TARGET
from src.signing import SigningKey
from src.storage import MANIFEST_NAME, ArtifactError, DataSourceError, sha256_file
from src.store import Pointer, Store, StoreError, check_version, now_iso

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.01  # R² points a challenger may lose against the champion and still replace it
DEFAULT_KEEP_VERSIONS = 10


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
) -> Decision:
    """Decide whether the candidate ``version`` (already in the store) replaces the champion, and apply it.

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
            champion = load_version(store, pointer.model_version, keys, pointer.manifest_sha256)
        except (ArtifactError, OSError, ValueError) as err:
            champion = None
            promote = True
            reason = (
                f"test R2 {new_r2:.4f}; the champion {pointer.model_version} cannot be loaded to compare "
                f"({err}): replacing it"
            )
        if champion is not None:
            old_predicted = predicted_on(champion, test)
            old_r2 = score_on(champion, test, old_predicted)
            promote = new_r2 >= old_r2 - config.tolerance
            verb = "replaces" if promote else "does not replace"
            reason = (
                f"test R2 {new_r2:.4f} vs champion {pointer.model_version} {old_r2:.4f} on the same test "
                f"split (tolerance {config.tolerance}): {verb} it"
            )
            if promote and config.group_tolerance is not None:
                refusal = group_check(
                    groups_on(candidate, test, new_predicted),
                    groups_on(champion, test, old_predicted),
                    config.group_tolerance,
                )
                if refusal is not None:
                    promote, reason = False, f"{reason}, but per group: {refusal}: does not replace it"
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
    store: Store, version: str, *, keys: Sequence[SigningKey] = (), registry: Registry | None = None
) -> Decision:
    """Make a verified ``version`` the champion without comparing (an operator's decision)."""
    version = check_version(version)
    if version not in store.versions():
        raise StoreError(f"{store.location} has no model version {version}; it has: {', '.join(store.versions())}")
    load_version(store, version, keys)  # a set that fails verification or cannot load never serves
    pointer, before = store.pointer_and_bytes()
    reason = "promoted by hand"
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
        "champion_test_r2_same_split": old_r2,
    }
    if trigger is not None:
        record["trigger"] = trigger
    try:
        store.write_decision(record)
    except (OSError, ArtifactError, DataSourceError) as err:  # the record is a log: losing it must not undo the decision
        logger.warning("could not record the decision in %s: %s", store.location, err)
    logger.info("decision on %s: %s", decision.version, decision.line())
