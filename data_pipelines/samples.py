"""The record every dataset adapter produces: one judged video."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Sample:
    """One judged video.

    Attributes:
        key: unique id inside its dataset, e.g. ``"01_12"`` (MTL-AQA video 1, dive 12),
            ``"diving_054"`` (AQA-7) or ``"Suturing_B001"`` (JIGSAWS). Names its feature-cache entry.
        path: frame folder or video file (.mp4/.avi/.mov/.webm/.mkv/.gif).
        score: the judged final score. AQA-7: already divided by 100 and normalised per class to
            0–100; JIGSAWS: the sum of the 6 GRS items (6–30).
        difficulty: degree of difficulty (MTL-AQA); 1.0 where a dataset has none.
        group: contrastive group: the difficulty as text for MTL-AQA with DD (``"3.2"``), the class
            for AQA-7, ``"all"`` otherwise. Exemplars are drawn from the same group.
        split: ``"train"`` or ``"test"`` (a manifest may use other names).
        start_frame, end_frame: frame range in the source broadcast (MTL-AQA annotations), if known.
            Informational: per-dive frame folders already start at the dive.
    """

    key: str
    path: str
    score: float
    difficulty: float = 1.0
    group: str = "all"
    split: str = "train"
    start_frame: int | None = None
    end_frame: int | None = None

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"Sample key must be a non-empty string, got {self.key!r}")
        if not math.isfinite(float(self.score)):
            raise ValueError(f"Sample {self.key}: score must be finite, got {self.score!r}")
        if not (math.isfinite(float(self.difficulty)) and float(self.difficulty) > 0):
            raise ValueError(f"Sample {self.key}: difficulty must be > 0, got {self.difficulty!r}")


def target(sample: Sample, use_difficulty: bool) -> float:
    """The regression target: ``score / difficulty`` with difficulty degree (DD), else ``score``."""
    return float(sample.score) / float(sample.difficulty) if use_difficulty else float(sample.score)


def split_counts(splits: dict[str, list[Sample]]) -> dict[str, int]:
    """``{"train": 1059, "test": 353}`` for an adapter's result (handy for ``tpt data-info``)."""
    return {name: len(samples) for name, samples in splits.items()}
