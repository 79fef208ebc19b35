"""Exemplar selection (SPEC §6): same-group exemplars for training pairs and for test voting.

Training: every epoch, each query gets one random training sample of its group, never itself
unless it is alone in the group (then it is paired with itself, as the original code does).

Test: each test sample gets up to ``num_exemplars`` (10) distinct training samples of its group,
drawn without replacement. **Fill rule** for a group with ``m < num_exemplars`` training samples:
all ``m`` are used, and the row is padded to ``num_exemplars`` by repeating them cyclically
(``members[0], members[1], …``) with ``mask = 0`` on the padding, so batches stay rectangular and
a masked mean over exemplars equals the plain mean over the ``m`` real ones. A test sample whose
group has no training sample at all is an error by default (``empty_group="error"``); with
``empty_group="all"`` it draws from the whole training set instead.

Everything is deterministic under a seed: training pairs depend on (seed, epoch) only, test
exemplars on (seed, test position) only.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .samples import Sample


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


def test_exemplars(test_samples: Sequence[Sample], train_samples: Sequence[Sample], num_exemplars: int = 10,
                   seed: int = 0, empty_group: str = "error") -> TestExemplars:
    """Up to ``num_exemplars`` same-group training exemplars per test sample (fill rule above).

    Args:
        test_samples, train_samples: the two lists.
        num_exemplars: exemplars per test sample (10 in SPEC §6).
        seed: the draw for test position i depends only on (seed, i).
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
    everyone = np.arange(len(train_samples), dtype=np.int64)
    indices = np.zeros((len(test_samples), num_exemplars), dtype=np.int64)
    mask = np.zeros((len(test_samples), num_exemplars), dtype=np.float32)
    for position, sample in enumerate(test_samples):
        group = members.get(sample.group)
        if group is None:
            if empty_group == "error":
                known = ", ".join(repr(name) for name in sorted(members)[:10])
                raise EmptyGroupError(
                    f"test sample {sample.key}: no training sample in its group {sample.group!r} (training "
                    f"groups: {known}{' …' if len(members) > 10 else ''}); give the group a training sample, "
                    "or set empty_group='all' (config field, `--set empty_group=all`) to draw its "
                    "exemplars from the whole training set")
            group = everyone
        rng = np.random.default_rng([int(seed), position, 1])
        count = min(len(group), num_exemplars)
        chosen = rng.choice(group, size=count, replace=False)
        indices[position] = np.resize(chosen, num_exemplars)  # cyclic repeat = the fill rule
        mask[position, :count] = 1.0
    return TestExemplars(indices, mask)


test_exemplars.__test__ = False  # not a pytest test despite its name
TestExemplars.__test__ = False
