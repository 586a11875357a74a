"""Training's fixed-path outputs for DVC, and its parameters file.

The artifact store gets a new folder per model version, which DVC cannot track as a stage output. With
``--reports-dir DIR`` training also copies, after the set is committed, ``metrics.json`` and the two plots to
``DIR`` and the whole set to ``DIR/model`` (a set the server can load): fixed paths for ``dvc.yaml``.
``--params params.yaml`` reads the training options from the file's ``train`` section.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from src.storage import MANIFEST_NAME, ArtifactError, read_manifest, verify_files
from src.store import set_files

logger = logging.getLogger(__name__)

PARAMS_SECTION = "train"
MODEL_SUBDIR = "model"
LIST_OPTIONS = ("models", "exclude_features")  # YAML lists become the comma-separated option


class ParamsError(ValueError):
    """The parameters file cannot be used (unreadable, not a mapping, unknown key)."""


def read_params(path: Path, allowed: Iterable[str]) -> dict[str, Any]:
    """The ``train`` section of a YAML file, as option defaults; every key must be a known option."""
    import yaml  # training only

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ParamsError(f"cannot read parameters from {path}: {err}") from err
    section = document.get(PARAMS_SECTION) if isinstance(document, Mapping) else None
    if not isinstance(section, Mapping):
        raise ParamsError(f"{path} has no '{PARAMS_SECTION}:' mapping of training options")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in section if k not in allowed)
    if unknown:
        raise ParamsError(f"{path}: unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key in LIST_OPTIONS and isinstance(value, list):
            value = ",".join(str(v) for v in value) or None
        values[key] = value
    return values


def export_reports(set_dir: Path, reports_dir: Path) -> Path:
    """Copy a committed set's metrics and plots to ``reports_dir`` and the set to ``reports_dir/model``."""
    manifest = read_manifest(set_dir)
    verify_files(set_dir, manifest)
    reports_dir.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", *manifest.get("plots", [])):
        staged = reports_dir / f".{name}.{uuid.uuid4().hex[:8]}"
        shutil.copyfile(set_dir / name, staged)
        staged.replace(reports_dir / name)
    target = reports_dir / MODEL_SUBDIR
    staging = reports_dir / f".{MODEL_SUBDIR}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    for name in set_files(set_dir):  # the signature too, when the set has one
        shutil.copyfile(set_dir / name, staging / name)
    if target.exists():
        if not (target / MANIFEST_NAME).is_file():  # never delete a folder training did not write
            shutil.rmtree(staging)
            raise ArtifactError(f"{target} exists and is not a model set written by training; move it away")
        shutil.rmtree(target)
    staging.rename(target)
    logger.info("reports: metrics, plots and the model set copied to %s", reports_dir)
    return target
