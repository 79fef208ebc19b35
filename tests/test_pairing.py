"""Exemplar selection on the real MTL-AQA split: same group, not itself, fill rule, determinism."""

import collections

import numpy as np
import pytest

from data_pipelines.tfdata import pairing
from data_pipelines.datasets import mtl_aqa
from data_pipelines.samples import Sample


@pytest.fixture(scope="module")
def mtl(shared_data):
    return mtl_aqa.load(shared_data / "MTL-AQA", None)


def test_training_pairs_same_group_never_self(mtl):
    train = mtl["train"]
    sizes = collections.Counter(s.group for s in train)
    pairs = pairing.training_pairs(train, 12, epoch=0)
    assert [q for q, _ in pairs] == list(range(len(train)))
    for query, exemplar in pairs:
        assert train[exemplar].group == train[query].group
        assert (exemplar == query) == (sizes[train[query].group] == 1)
    lonely = [i for i, s in enumerate(train) if sizes[s.group] == 1]
    assert [train[i].group for i in lonely] == ["1.5"]  # difficulty 1.5: one training dive, paired with itself


def test_training_pairs_deterministic_and_new_each_epoch(mtl):
    train = mtl["train"]
    assert pairing.training_pairs(train, 12, 3) == pairing.training_pairs(train, 12, 3)
    epoch0, epoch1 = pairing.training_pairs(train, 12, 0), pairing.training_pairs(train, 12, 1)
    assert sum(a != b for a, b in zip(epoch0, epoch1)) > 900
    assert pairing.training_pairs(train, 13, 0) != epoch0
    generator_pairs = pairing.training_pairs(train, np.random.default_rng(0))
    assert len(generator_pairs) == len(train)


def test_training_pairs_cover_the_group():
    samples = [Sample(key=str(i), path="p", score=float(i), group="a" if i < 4 else "b") for i in range(6)]
    seen = collections.defaultdict(set)
    for epoch in range(60):
        for query, exemplar in pairing.training_pairs(samples, 0, epoch):
            seen[query].add(exemplar)
    assert seen[0] == {1, 2, 3} and seen[3] == {0, 1, 2}
    assert seen[4] == {5} and seen[5] == {4}


def test_test_exemplars_fill_rule(mtl):
    train, test = mtl["train"], mtl["test"]
    members = pairing.group_members(train)
    chosen = pairing.test_exemplars(test, train, num_exemplars=10, seed=0)
    assert chosen.indices.shape == (353, 10) and chosen.indices.dtype == np.int64
    assert chosen.mask.shape == (353, 10) and chosen.mask.dtype == np.float32
    padded = 0
    for row, sample in enumerate(test):
        group = set(members[sample.group].tolist())
        count = min(len(group), 10)
        indices = chosen.indices[row]
        assert set(indices.tolist()) <= group
        assert len(set(indices[:count].tolist())) == count  # distinct real exemplars
        np.testing.assert_array_equal(chosen.mask[row], [1.0] * count + [0.0] * (10 - count))
        np.testing.assert_array_equal(indices, indices[np.arange(10) % count])  # cyclic padding
        if count < 10:
            assert set(indices.tolist()) == group  # a small group is used entirely
            padded += 1
    assert padded == int((chosen.counts < 10).sum()) > 0
    again = pairing.test_exemplars(test, train, 10, seed=0)
    np.testing.assert_array_equal(again.indices, chosen.indices)
    assert not np.array_equal(pairing.test_exemplars(test, train, 10, seed=1).indices, chosen.indices)


def test_test_exemplars_empty_group():
    train = [Sample(key=f"t{i}", path="p", score=1.0, group="3.0") for i in range(3)]
    test = [Sample(key="q", path="p", score=1.0, group="4.1", split="test")]
    with pytest.raises(pairing.EmptyGroupError,
                       match=r"test sample q: no training sample in its group '4.1' \(training groups: '3.0'\); "
                             r".*--set empty_group=all"):
        pairing.test_exemplars(test, train)
    chosen = pairing.test_exemplars(test, train, num_exemplars=4, empty_group="all")
    assert sorted(chosen.indices[0, :3].tolist()) == [0, 1, 2] and chosen.indices[0, 3] == chosen.indices[0, 0]
    np.testing.assert_array_equal(chosen.mask[0], [1, 1, 1, 0])


# ------------------------------------------------------------------ the last, partial batch
def test_steps_per_epoch_keep_or_drop_the_partial_batch():
    from data_pipelines.tfdata import reader

    # 500 pairs with batch 24: 20 full batches and one of 20 (PyTorch's drop_last=False) or not.
    assert reader.steps_per_epoch(500, 24, keep_last_batch=True) == 21
    assert reader.steps_per_epoch(500, 24) == 20
    assert reader.steps_per_epoch(48, 24, keep_last_batch=True) == 2


def test_kept_partial_batch_ends_each_epoch_without_straddling(tmp_path):
    """11 samples, batch 4, two epochs: batches of 4, 4, 3 per epoch; each epoch holds every
    sample once as a query, in the order the plan of that epoch gives."""
    import tensorflow as tf

    from data_pipelines.io.feature_cache import FeatureCache
    from data_pipelines.tfdata import reader

    cache = FeatureCache(str(tmp_path / "cache"), feature_dim=2, num_clips=3, backbone="test",
                         create=True)
    samples = []
    for i in range(11):
        samples.append(Sample(key=f"s{i:02d}", path=f"/x/{i}", score=float(i), difficulty=1.0,
                              group="a" if i < 6 else "b"))
        cache.write(samples[-1].key, np.full((3, 2), i, np.float32))
    dataset = reader.feature_pair_dataset(cache, samples, batch_size=4, use_difficulty=False,
                                          seed=3, epochs=2, keep_last_batch=True)
    sizes = [int(batch["query"].shape[0]) for batch in dataset]
    assert sizes == [4, 4, 3, 4, 4, 3]
    queries = [batch["query"][:, 0, 0].numpy().astype(int).tolist() for batch in dataset]
    for epoch in range(2):
        plan = reader.epoch_plan(samples, 3, epoch)  # every row kept (global batch 1)
        flat = sum(queries[3 * epoch:3 * epoch + 3], [])
        assert flat == plan[:, 0].tolist() and sorted(flat) == list(range(11))
    # Dropped: two full batches per epoch.
    dropped = reader.feature_pair_dataset(cache, samples, batch_size=4, use_difficulty=False,
                                          seed=3, epochs=2)
    assert [int(b["query"].shape[0]) for b in dropped] == [4, 4, 4, 4]
    # Several replicas cannot share a partial batch: refused with what to do.
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                         num_replicas_in_sync=2)
    with pytest.raises(ValueError, match="keep_last_batch"):
        reader.feature_pair_dataset(cache, samples, batch_size=4, use_difficulty=False, seed=3,
                                    input_context=context, keep_last_batch=True)
