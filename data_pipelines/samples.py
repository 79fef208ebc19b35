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
        steps: the per-frame step (sub-action) labels of the video, run-length encoded in time
            order: ``((label, num_frames), ...)``, e.g. ``((4, 3), (25, 32), (36, 50))`` for
            "Inward" over frames 0-2, "3.5 Soms.Tuck" over 3-34, "Entry" over 35-84 (FineDiving);
            None when the data has no step labels. Expand with
            :func:`data_pipelines.video.steps.frame_labels`.
    """

    key: str
    path: str
    score: float
    difficulty: float = 1.0
    group: str = "all"
    split: str = "train"
    start_frame: int | None = None
    end_frame: int | None = None
    steps: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"Sample key must be a non-empty string, got {self.key!r}")
        if not math.isfinite(float(self.score)):
            raise ValueError(f"Sample {self.key}: score must be finite, got {self.score!r}")
        if not (math.isfinite(float(self.difficulty)) and float(self.difficulty) > 0):
            raise ValueError(f"Sample {self.key}: difficulty must be > 0, got {self.difficulty!r}")
        if self.steps is not None:  # JSON gives lists: keep the dataclass hashable
            try:
                steps = tuple((int(label), int(length)) for label, length in self.steps)
            except (TypeError, ValueError):
                raise ValueError(f"Sample {self.key}: steps must be (label, num_frames) pairs, "
                                 f"got {self.steps!r}") from None
            if not steps or min(length for _, length in steps) < 1:
                raise ValueError(f"Sample {self.key}: every step must cover at least one frame, "
                                 f"got {steps!r}")
            object.__setattr__(self, "steps", steps)


def target(sample: Sample, use_difficulty: bool) -> float:
    """The regression target: ``score / difficulty`` with difficulty degree (DD), else ``score``."""
    return float(sample.score) / float(sample.difficulty) if use_difficulty else float(sample.score)


def split_counts(splits: dict[str, list[Sample]]) -> dict[str, int]:
    """``{"train": 1059, "test": 353}`` for an adapter's result (handy for ``tpt data-info``)."""
    return {name: len(samples) for name, samples in splits.items()}
