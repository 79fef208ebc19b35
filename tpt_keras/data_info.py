"""``tpt data-info``: what a dataset's annotation files hold, and the intervals training would use.

Reads annotation files only (no frames or videos needed), through the same adapters and the same
interval code that training uses, so what it prints is what training will see.
"""

from __future__ import annotations

import collections

import numpy as np

from data_pipelines import samples as samples_lib
from tpt_keras import groups as groups_lib

# The right edge of the last interval per protocol (SPEC §4).
DEFAULT_SCORE_MAX = {"mtl_aqa_dd": 30.0, "mtl_aqa_nodd": 100.0, "aqa7": 100.0, "jigsaws": 30.0, "custom": None}


def load_annotations(dataset: str, annotations: str, *, use_difficulty: bool = True,
                     action_class: str = "diving", task: str = "suturing", fold: int = 0):
    """Samples by split for ``dataset`` read from annotation files only (paths are not checked)."""
    from data_pipelines.datasets import aqa7, jigsaws, manifest, mtl_aqa

    if dataset == "mtl_aqa":
        return mtl_aqa.load(annotations, None, use_difficulty=use_difficulty)
    if dataset == "aqa7":
        return aqa7.load(annotations, None, action_class=action_class)
    if dataset == "jigsaws":
        return jigsaws.load(annotations, None, task=task, fold=fold)
    if dataset == "custom":
        return manifest.load(annotations, check_paths=False)
    raise ValueError(f"unknown dataset {dataset!r}; choose mtl_aqa, aqa7, jigsaws or custom")


def dataset_info(splits: dict, *, use_difficulty: bool, score_max: float | None,
                 num_intervals: int = 16, num_exemplars: int = 10) -> dict:
    """Summarise samples by split: counts per split and group, score ranges, the training
    intervals and the test samples with fewer than ``num_exemplars`` same-group exemplars."""
    train = splits.get("train", [])
    if not train:
        raise ValueError("no training samples: the intervals are computed from training scores")
    targets = np.array([samples_lib.target(s, use_difficulty) for s in train], dtype=np.float64)
    train_groups = [s.group for s in train]
    if score_max is None:
        score_max = float(np.ceil(targets.max() - targets.min()))
    intervals = groups_lib.compute_intervals(targets, train_groups, num_intervals=num_intervals,
                                             max_value=score_max)
    group_sizes = collections.Counter(train_groups)
    info = {
        "splits": {name: len(items) for name, items in splits.items()},
        "groups": {name: dict(sorted(collections.Counter(s.group for s in items).items()))
                   for name, items in splits.items()},
        "score_range": {name: [float(min(s.score for s in items)), float(max(s.score for s in items))]
                        for name, items in splits.items() if items},
        "target_range": [float(targets.min()), float(targets.max())],
        "use_difficulty": use_difficulty,
        "score_max": float(score_max),
        "intervals": [[float(left), float(right)] for left, right in intervals],
        "test_with_fewer_than_10_exemplars": sum(
            1 for s in splits.get("test", []) if group_sizes.get(s.group, 0) < num_exemplars),
    }
    return info


def format_info(info: dict) -> str:
    """A human-readable report of :func:`dataset_info`."""
    lines = ["split     samples   score range"]
    for name, count in info["splits"].items():
        low, high = info["score_range"].get(name, [float("nan")] * 2)
        lines.append(f"{name:<9} {count:>7}   {low:.2f} – {high:.2f}")
    lines.append("")
    lines.append(f"regression target: {'score / difficulty' if info['use_difficulty'] else 'score'}, "
                 f"range {info['target_range'][0]:.3f} – {info['target_range'][1]:.3f}, "
                 f"interval max {info['score_max']:g}")
    for name, counts in info["groups"].items():
        shown = ", ".join(f"{group}: {count}" for group, count in counts.items())
        lines.append(f"groups ({name}): {shown}")
    lines.append("")
    lines.append(f"{len(info['intervals'])} group-aware intervals (relative score Δ):")
    for index, (left, right) in enumerate(info["intervals"]):
        lines.append(f"  {index:>2}  [{left:9.4f}, {right:9.4f}]")
    lines.append("")
    lines.append("test samples with fewer than 10 same-group training exemplars: "
                 f"{info['test_with_fewer_than_10_exemplars']}")
    return "\n".join(lines)
