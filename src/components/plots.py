"""The training's two plots, written into the artifact set: predicted vs actual, and error by student group.

matplotlib is a training requirement only (``requirements-train.txt``); the server just serves the PNG files
the manifest lists.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.storage import atomic_write_bytes

logger = logging.getLogger(__name__)

PREDICTED_VS_ACTUAL = "predicted_vs_actual.png"
ERROR_BY_GROUP = "error_by_group.png"
PLOTS = (PREDICTED_VS_ACTUAL, ERROR_BY_GROUP)
DPI = 100


def write_plots(
    folder: Path,
    actual: np.ndarray,
    predicted: np.ndarray,
    half_width: float | np.ndarray,
    groups: Mapping[str, Mapping[str, Mapping[str, Any]]],
    model_name: str,
) -> list[Path]:
    """Write both plots of the test split into ``folder``; returns their paths."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> Path:
        buffer = io.BytesIO()
        # No creation date in the PNG: the same training gives the same bytes.
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        path = folder / name
        atomic_write_bytes(path, buffer.getvalue())
        return path

    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.errorbar(actual, predicted, yerr=np.broadcast_to(half_width, actual.shape), fmt="o", ms=3, alpha=0.5, elinewidth=0.5)
    ax.plot([0, 100], [0, 100], "k--", lw=1)
    ax.set(
        xlabel="actual math score",
        ylabel="predicted math score (90% interval)",
        title=f"Test split: predicted vs actual ({model_name})",
    )
    paths = [save(fig, PREDICTED_VS_ACTUAL)]

    features = list(groups)
    fig, axes = plt.subplots(len(features), 1, figsize=(7, 2.2 * len(features)), squeeze=False)
    for ax, feature in zip(axes[:, 0], features, strict=True):
        rows = [(group, row) for group, row in groups[feature].items() if row.get("mae") is not None]
        labels = [f"{group} (n={row['count']}{', small' if row.get('small') else ''})" for group, row in rows]
        ax.barh(labels, [row["mae"] for _, row in rows], color=["#bbb" if r.get("small") else "#3465a4" for _, r in rows])
        ax.invert_yaxis()
        ax.set(xlabel="mean absolute error (points)", title=f"Error by {feature}")
    fig.tight_layout()
    paths.append(save(fig, ERROR_BY_GROUP))
    logger.info("wrote plots %s", ", ".join(p.name for p in paths))
    return paths
