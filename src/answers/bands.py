"""Bands a teacher can act on, decided with the 90 % range rather than the point prediction alone.

``needs_support``: the whole range is below the cut; ``on_track``: the whole range is at or above it;
``uncertain``: the range straddles the cut. The rule is applied to the range as it is reported (0-100, one
decimal), so the band never contradicts the numbers shown beside it.

A school chooses which range decides (``policy``): ``all_details``, the range of the prediction from every
detail entered, or ``scores_only``, the range of the prediction with the four background details at their
training average (the scores and the course alone), so that no band changes with a background detail alone.
The chance below the cut follows the same prediction. Only a model with exact factors can set the background
aside; the answer's band payload names the policy that decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.arrays import REPORT_SCALE, Coded
from src.answers.kernels import band_codes, compute
from src.schema import TARGET

ALL_DETAILS = "all_details"
SCORES_ONLY = "scores_only"
BAND_POLICIES: tuple[str, ...] = (ALL_DETAILS, SCORES_ONLY)
NEEDS_SUPPORT = "needs_support"
UNCERTAIN = "uncertain"
ON_TRACK = "on_track"
BAND_NAMES: tuple[str, ...] = (NEEDS_SUPPORT, UNCERTAIN, ON_TRACK)
BAND_WORDS = np.array(BAND_NAMES, dtype=object)
BAND_WORDS.flags.writeable = False  # shared by every answer's bands


@dataclass(frozen=True)
class Bands:
    """The band rule for one cut score, with its plain-language labels made once."""

    cut: float
    policy: str = ALL_DETAILS  # what decides: every detail, or the scores and course alone (SCORES_ONLY)

    def __post_init__(self) -> None:
        if self.policy not in BAND_POLICIES:
            raise ValueError(f"a band policy is one of {', '.join(BAND_POLICIES)}, got {self.policy!r}")
        cut = f"{self.cut:g}"
        labels = {
            NEEDS_SUPPORT: f"very likely below {cut}",
            UNCERTAIN: f"could be either side of {cut}",
            ON_TRACK: f"very likely {cut} or above",
        }
        payloads = {
            name: {"name": name, "label": labels[name], "cut": self.cut, "policy": self.policy} for name in BAND_NAMES
        }
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_payloads", payloads)

    def names(self, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
        """The bands of many reported ranges, as one vector of names."""
        return self.coded(lows, highs).text()

    def coded(self, lows: np.ndarray, highs: np.ndarray) -> Coded:
        """``names`` as positions in ``BAND_NAMES``."""
        return Coded(self.codes(lows, highs), BAND_WORDS)

    def codes(self, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
        """The bands of ranges of any shape as positions in ``BAND_NAMES`` (a low is never above its high):
        ``src.answers.kernels.band_codes``, the rule every answer's band follows."""
        lows, highs = (np.array(a, dtype=float, order="C") for a in np.broadcast_arrays(lows, highs))
        codes = np.empty(lows.shape, dtype=np.int8)
        band_codes(lows.reshape(-1), highs.reshape(-1), float(self.cut), codes.reshape(-1))
        return codes

    @property
    def scores_only(self) -> bool:
        return self.policy == SCORES_ONLY

    def payload(self, name: str) -> dict[str, Any]:
        """The JSON form: ``{"name", "label", "cut", "policy"}`` (a fresh dict each time; callers may not share it)."""
        return dict(self._payloads[name])  # type: ignore[attr-defined]


def coded_bands_without_background(bands: Bands, raw: np.ndarray, background: np.ndarray, half_width: float) -> Coded:
    """The band each student would get with the four background details at their training average, as
    positions in ``BAND_NAMES``.

    ``raw``: unclipped scores; ``background``: the background contributions' sum for each (exact factors only).
    The answer minus those contributions, with the same range width, banded as a reported range is.
    """
    _, without = reported_band_codes(raw, half_width, bands.cut, background)
    return Coded(without, BAND_WORDS)  # type: ignore[arg-type]  # given a background, never None


def reported_band_codes(
    raw: np.ndarray, half_width: float, cut: float, background: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The bands, as positions in ``BAND_NAMES``, of the ranges ``raw -/+ half_width`` made as serving reports
    them (within the target's bounds, rounded to the reported decimals) against ``cut``; and, given each student's
    ``background`` part, those of the ranges without it, else None (``src.answers.kernels.compute``)."""
    done = compute(
        raw=raw,
        background=background,
        half_width=half_width,
        minimum=TARGET.minimum,
        maximum=TARGET.maximum,
        cut=cut,
        report_scale=REPORT_SCALE,
    )
    return done.bands[0], None if background is None else done.bands[1]
