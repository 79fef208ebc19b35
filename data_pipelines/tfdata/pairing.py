"""Exemplar selection, as the original code does it: same-group exemplars for training pairs and for test voting.

Training: every epoch, each query gets one random training sample of its group, never itself
unless it is alone in the group (then it is paired with itself, as the original code does).

Test (**one rule for evaluation, ``tpt score`` and the export**): each contrastive group gets one
fixed set of up to ``num_exemplars`` (10) distinct training samples, drawn without replacement with
a generator seeded by (seed, the group's name) only; every test video of the group votes with that
same set. A SavedModel has no test position to seed a draw with, only the video (and its
difficulty, or group), so a per-group set is the rule both paths can share: the same video gets
the same exemplars, hence the same score, from ``tpt evaluate``, ``tpt score`` and the export.
**Fill rule** for a group with ``m < num_exemplars`` training samples:
all ``m`` are used, and the row is padded to ``num_exemplars`` by repeating them cyclically
(``members[0], members[1], …``) with ``mask = 0`` on the padding, so batches stay rectangular and
a masked mean over exemplars equals the plain mean over the ``m`` real ones. A test sample whose
group has no training sample at all is an error by default (``empty_group="error"``); with
``empty_group="all"`` it draws from the whole training set instead.

Everything is deterministic under a seed: training pairs depend on (seed, epoch) only, test
exemplars on (seed, group name) only.
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from data_pipelines.samples import Sample


def group_members(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """``{group: int64 array of the positions of its samples}`` in sample order."""
    members: dict[str, list[int]] = collections.defaultdict(list)
    for position, sample in enumerate(samples):
        members[sample.group].append(position)
    return {group: np.asarray(positions, dtype=np.int64) for group, positions in members.items()}


def _rng(rng_or_seed, *stream) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng([int(rng_or_seed), *[int(v) for v in stream]])


def training_pairs(train_samples: Sequence[Sample], rng_or_seed, epoch: int = 0) -> list[tuple[int, int]]:
    """One (query, exemplar) pair per training sample for one epoch.

    Args:
        train_samples: the training list.
        rng_or_seed: an int seed (the draw then depends only on (seed, epoch)) or a
            ``np.random.Generator`` (drawn from directly; ``epoch`` is then unused).
        epoch: epoch number; each epoch draws new exemplars.

    Returns:
        ``[(query_index, exemplar_index), ...]`` with query_index = 0..N-1 in order; the exemplar
        is in the query's group and differs from it unless the group has one member.
    """
    rng = _rng(rng_or_seed, epoch, 0)
    members = group_members(train_samples)
    pairs = []
    for query, sample in enumerate(train_samples):
        group = members[sample.group]
        if len(group) == 1:
            pairs.append((query, query))
            continue
        # Draw among the other len(group) - 1 members: skip over the query's own slot.
        draw = int(rng.integers(len(group) - 1))
        own = int(np.searchsorted(group, query))
        pairs.append((query, int(group[draw + (draw >= own)])))
    return pairs


class EmptyGroupError(ValueError):
    """A test sample whose group has no training sample (with ``empty_group="error"``)."""


class TestExemplars(NamedTuple):
    """Exemplars of every test sample.

    Attributes:
        indices: int64 (num_test, num_exemplars), positions in the training list.
        mask: float32 (num_test, num_exemplars): 1 for a real exemplar, 0 for padding.
    """

    indices: np.ndarray
    mask: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """int64 (num_test,): real exemplars per test sample."""
        return self.mask.sum(axis=1).astype(np.int64)


def group_exemplars(train_samples: Sequence[Sample], group: str | None, num_exemplars: int = 10,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed exemplar set of one contrastive group (the rule in the module docstring).

    Args:
        train_samples: the training list.
        group: a group name present in ``train_samples``, or None for the whole training set
            (the ``empty_group="all"`` fallback; drawn on its own stream).
        num_exemplars: E.
        seed: the run's seed; the draw depends only on (seed, group).

    Returns:
        indices int64 (E,) positions in ``train_samples`` (the m real ones first, then cyclic
        repeats), mask float32 (E,) with 1 on the m = min(E, group size) real exemplars.
    """
    if num_exemplars < 1:
        raise ValueError(f"num_exemplars must be ≥ 1, got {num_exemplars}")
    if group is None:
        members, stream = np.arange(len(train_samples), dtype=np.int64), 2
    else:
        members, stream = group_members(train_samples).get(group), 1
        if members is None:
            raise ValueError(f"no training sample in group {group!r}")
    if len(members) == 0:
        raise ValueError("no training samples to draw exemplars from")
    name = "" if group is None else group
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8")), stream])
    count = min(len(members), num_exemplars)
    chosen = rng.choice(members, size=count, replace=False)
    mask = (np.arange(num_exemplars) < count).astype(np.float32)
    return np.resize(chosen, num_exemplars).astype(np.int64), mask  # cyclic repeat = fill rule


def test_exemplars(test_samples: Sequence[Sample], train_samples: Sequence[Sample], num_exemplars: int = 10,
                   seed: int = 0, empty_group: str = "error") -> TestExemplars:
    """The exemplars of each test sample: its group's fixed set (:func:`group_exemplars`).

    Args:
        test_samples, train_samples: the two lists.
        num_exemplars: exemplars per test sample (10, as in the paper).
        seed: the run's seed; a row depends only on (seed, the sample's group).
        empty_group: ``"error"`` or ``"all"`` for a test group absent from training.

    Returns:
        :class:`TestExemplars` with rectangular (num_test, num_exemplars) arrays.
    """
    if num_exemplars < 1:
        raise ValueError(f"num_exemplars must be ≥ 1, got {num_exemplars}")
    if empty_group not in ("error", "all"):
        raise ValueError(f"empty_group must be 'error' or 'all', got {empty_group!r}")
    if not train_samples:
        raise ValueError("no training samples to draw exemplars from")
    members = group_members(train_samples)
    indices = np.zeros((len(test_samples), num_exemplars), dtype=np.int64)
    mask = np.zeros((len(test_samples), num_exemplars), dtype=np.float32)
    sets: dict = {}
    for position, sample in enumerate(test_samples):
        group = sample.group if sample.group in members else None
        if group is None and empty_group == "error":
            known = ", ".join(repr(name) for name in sorted(members)[:10])
            raise EmptyGroupError(
                f"test sample {sample.key}: no training sample in its group {sample.group!r} (training "
                f"groups: {known}{' …' if len(members) > 10 else ''}); give the group a training sample, "
                "or set empty_group='all' (config field, `--set empty_group=all`) to draw its "
                "exemplars from the whole training set")
        if group not in sets:
            sets[group] = group_exemplars(train_samples, group, num_exemplars, seed)
        indices[position], mask[position] = sets[group]
    return TestExemplars(indices, mask)


test_exemplars.__test__ = False  # not a pytest test despite its name
TestExemplars.__test__ = False
