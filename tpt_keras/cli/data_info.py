"""``tpt data-info``: what a dataset's annotation files hold, and the intervals training would use.

Reads annotation files only (no frames or videos needed), through the same adapters and the same
interval code that training uses, so what it prints is what training will see.
"""

from __future__ import annotations

import collections

import numpy as np

from data_pipelines import datasets, samples as samples_lib
from tpt_keras import experiment
from tpt_keras.config import TPTConfig, get_preset


def dataset_config(dataset: str, *, use_difficulty: bool = True, action_class: str | None = None,
                   task: str | None = None, fold: int | None = None) -> TPTConfig:
    """The preset ``tpt train`` would use for ``dataset`` (with the class / task / fold): of the
    dataset's registered presets, the first whose ``use_difficulty`` matches, else its first."""
    record = datasets.get(dataset)
    if record.source == "synthetic":
        raise ValueError(f"{dataset} is built-in data with no annotation files to summarise; "
                         f"choose one of {', '.join(info_datasets())}")
    presets = [get_preset(name) for name in record.presets]
    config = next((c for c in presets if c.use_difficulty == use_difficulty), presets[0])
    overrides = {}
    if record.classes:
        overrides["action_class"] = action_class or task or config.action_class or record.default_class
    if fold is not None:
        overrides["fold"] = fold
    return config.replace(**overrides) if overrides else config


def info_datasets() -> tuple[str, ...]:
    """The registered datasets ``tpt data-info`` can read: those with annotation files or a
    manifest (built-in synthetic data has none)."""
    return datasets.names("annotations", "manifest")


def dataset_info(config: TPTConfig, splits: dict, num_exemplars: int = 10) -> dict:
    """Summarise samples by split: counts per split and group, score ranges, the intervals
    training computes from them (``experiment.model_intervals``) and the test samples with
    fewer than ``num_exemplars`` same-group training exemplars."""
    train = splits.get("train", [])
    if not train:
        raise ValueError("no training samples: the intervals are computed from training scores")
    targets = np.array([samples_lib.target(s, config.use_difficulty) for s in train])
    intervals = experiment.model_intervals(config, train)
    group_sizes = collections.Counter(s.group for s in train)
    info = {
        "splits": {name: len(items) for name, items in splits.items()},
        "groups": {name: dict(sorted(collections.Counter(s.group for s in items).items()))
                   for name, items in splits.items()},
        "score_range": {name: [float(min(s.score for s in items)), float(max(s.score for s in items))]
                        for name, items in splits.items() if items},
        "target_range": [float(targets.min()), float(targets.max())],
        "use_difficulty": config.use_difficulty,
        "score_max": float(config.score_max),
        "intervals": [[float(left), float(right)] for left, right in intervals],
        "test_with_fewer_than_10_exemplars": sum(
            1 for s in splits.get("test", []) if group_sizes.get(s.group, 0) < num_exemplars),
    }
    counted = datasets.get(config.dataset).info_groups  # e.g. FineDiving's action types
    if counted:
        key = counted[0]
        info[key] = {name: len({s.group for s in items}) for name, items in splits.items()}
        info[key]["all"] = len({s.group for items in splits.values() for s in items})
        info["counted_groups"] = list(counted)  # [key, title] for format_info
    labelled = [s for items in splits.values() for s in items if s.steps]
    if labelled:
        info["steps"] = step_statistics(labelled)
    return info


def _summary(values) -> dict:
    values = np.asarray(values, np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)),
            "mean": float(values.mean()), "max": float(values.max())}


def step_statistics(samples) -> dict:
    """Step statistics of samples with step labels (all splits together): dives, how many dives
    have J steps, step and dive lengths in frames, distinct step labels."""
    lengths = [length for s in samples for _, length in s.steps]
    per_dive = collections.Counter(len(s.steps) for s in samples)
    return {
        "dives": len(samples),
        "steps_per_dive": {str(count): per_dive[count] for count in sorted(per_dive)},
        "step_frames": _summary(lengths),
        "dive_frames": _summary([sum(length for _, length in s.steps) for s in samples]),
        "step_labels": len({label for s in samples for label, _ in s.steps}),
    }


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
    if "counted_groups" in info:
        key, title = info["counted_groups"]
        shown = ", ".join(f"{name} {count}" for name, count in info[key].items())
        lines.append(f"{title}: {shown}")
    if "steps" in info:
        steps = info["steps"]
        per_dive = ", ".join(f"{count} steps: {dives}" for count, dives in steps["steps_per_dive"].items())
        lines.append(f"step labels: {steps['dives']} dives ({per_dive}), {steps['step_labels']} distinct steps")
        for name, title in (("step_frames", "step length"), ("dive_frames", "dive length")):
            stats = steps[name]
            lines.append(f"  {title} in frames: min {stats['min']:g}, median {stats['median']:g}, "
                         f"mean {stats['mean']:.1f}, max {stats['max']:g}")
    return "\n".join(lines)
