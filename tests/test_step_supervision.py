"""Optional step supervision and the parsing metric in evaluation:
the loss against hand computations, the pair reader carrying step boundaries, the model's total,
and the step band of the attention picture."""

import numpy as np
import pytest

from data_pipelines.tfdata import reader
from data_pipelines.io.feature_cache import FeatureCache
from data_pipelines.samples import Sample
from tpt_keras.ops import losses
from tpt_keras import visualize


def _one_hot_attention(centres, num_clips):
    """(K,) clip indices → (T, K) attention putting all weight on those clips."""
    attention = np.zeros((num_clips, len(centres)), np.float32)
    attention[centres, np.arange(len(centres))] = 1.0
    return attention


def test_step_boundary_loss_known_answer():
    # video 0: parts at clips 1, 5, 8 → part boundaries 3 and 6.5; annotated 2.5, 6.5 (one pad)
    #   → nearest distances 0.5 and 0.
    # video 1: uniform attention over 10 clips → every centre 4.5, part boundaries 4.5, 4.5;
    #   annotated 2.0 → 2.5.   Mean over the 3 real boundaries: (0.5 + 0 + 2.5) / 3 = 1.0.
    attention = np.stack([_one_hot_attention([1, 5, 8], 10), np.full((10, 3), 0.1, np.float32)])
    boundaries = np.array([[2.5, 6.5, 99.0], [2.0, 99.0, 99.0]], np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    value = float(losses.step_boundary_loss(attention, boundaries, mask))
    assert value == pytest.approx(1.0, abs=1e-5)
    # no annotated boundary at all: 0, not NaN
    assert float(losses.step_boundary_loss(attention, boundaries, np.zeros_like(mask))) == 0.0


def test_step_boundary_loss_gradient_moves_the_nearest_part_only():
    import tensorflow as tf

    # centres 1, 5, 8 → boundaries 3, 6.5; annotated 2.5 pulls boundary 3 (parts 0 and 1) left.
    logits = tf.Variable(np.log(_one_hot_attention([1, 5, 8], 10) + 1e-3)[None])
    with tf.GradientTape() as tape:
        attention = tf.nn.softmax(logits, axis=1)
        value = losses.step_boundary_loss(attention, [[2.5]], [[1.0]])
    gradient = tape.gradient(value, logits).numpy()[0]  # (T, K)
    assert np.abs(gradient[:, 2]).max() < 1e-6  # part 2 only shapes boundary 6.5: untouched
    assert np.abs(gradient[:, 0]).max() > 1e-4 and np.abs(gradient[:, 1]).max() > 1e-4


def test_pad_boundaries():
    values, mask = reader.pad_boundaries([np.array([1.5, 7.0]), np.array([3.0, 9.0, 14.5]), np.array([])])
    np.testing.assert_array_equal(values, [[1.5, 7.0, 0.0], [3.0, 9.0, 14.5], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 1, 1], [0, 0, 0]])


def _cache(tmp_path, samples, dim=4, clips=20):
    cache = FeatureCache(str(tmp_path / "cache"), feature_dim=dim, num_clips=clips, backbone="test",
                         create=True)
    for n, s in enumerate(samples):
        cache.write(s.key, np.full((clips, dim), float(n), np.float32))
    return cache


def test_feature_pair_reader_carries_boundaries_by_row(tmp_path):
    samples = [Sample(key=f"v{n}", path="", score=10.0 + n, difficulty=1.0, group="a", split="train")
               for n in range(4)]
    bounds = [np.array([1.0 + n]) if n % 2 else np.array([2.0 + n, 12.0]) for n in range(4)]
    cache = _cache(tmp_path, samples)
    element = next(iter(reader.feature_pair_dataset(cache, samples, 4, False, seed=3,
                                                    step_boundaries=bounds)))
    # the feature of video n is n everywhere, so it names the row the boundaries must come from
    table = {0: ([2.0, 12.0], [1, 1]), 1: ([2.0, 0.0], [1, 0]), 2: ([4.0, 12.0], [1, 1]),
             3: ([4.0, 0.0], [1, 0])}
    for role in ("query", "exemplar"):
        rows = element[role].numpy()[:, 0, 0].astype(int)
        for row, video in enumerate(rows):
            np.testing.assert_array_equal(element[f"{role}_boundaries"].numpy()[row], table[video][0])
            np.testing.assert_array_equal(element[f"{role}_boundary_mask"].numpy()[row], table[video][1])
    # without boundaries the element is as before: no step entries
    plain = next(iter(reader.feature_pair_dataset(cache, samples, 4, False, seed=3)))
    assert sorted(plain) == ["exemplar", "exemplar_score", "query", "query_difficulty", "query_score"]


def test_model_total_adds_weighted_step_loss():
    from tpt_keras.config import get_preset
    from tpt_keras.models.tpt_model import TPTModel

    config = get_preset("synthetic", step_weight=2.0, num_layers=2)
    intervals = np.stack([np.linspace(-30, 26.25, 16), np.linspace(-26.25, 30, 16)], axis=1)
    model = TPTModel(config, intervals)
    rng = np.random.default_rng(0)
    batch = 3
    inputs = {"query": rng.standard_normal((batch, 20, 64)).astype(np.float32),
              "exemplar": rng.standard_normal((batch, 20, 64)).astype(np.float32),
              "query_score": np.array([10.0, 12.0, 14.0], np.float32),
              "exemplar_score": np.array([11.0, 9.0, 15.0], np.float32),
              "query_difficulty": np.ones(batch, np.float32),
              "query_boundaries": np.array([[3.0, 9.0], [4.0, 0.0], [8.0, 15.0]], np.float32),
              "query_boundary_mask": np.array([[1, 1], [1, 0], [1, 1]], np.float32),
              "exemplar_boundaries": np.array([[5.0, 0.0], [2.0, 11.0], [6.0, 0.0]], np.float32),
              "exemplar_boundary_mask": np.array([[1, 0], [1, 1], [1, 0]], np.float32)}
    outputs = model(inputs, training=False)
    terms = model.compute_pair_losses(inputs, outputs)
    # naive: last layer's maps, 0-based centres, midpoints in part order, nearest, mean
    attention = np.asarray(outputs["attention"])[:, -1]  # (2B, T, K)
    centres = np.einsum("btk,t->bk", attention, np.arange(20.0))
    parts = (centres[:, 1:] + centres[:, :-1]) / 2
    bounds = np.concatenate([inputs["query_boundaries"], inputs["exemplar_boundaries"]])
    mask = np.concatenate([inputs["query_boundary_mask"], inputs["exemplar_boundary_mask"]])
    distances = [min(abs(b - p) for p in parts[v]) for v in range(6) for b, m in zip(bounds[v], mask[v]) if m]
    assert float(terms["step_loss"]) == pytest.approx(np.mean(distances), rel=1e-4)
    others = sum(w * float(terms[n]) for w, n in ((1.0, "cls_loss"), (1.0, "reg_loss"),
                                                  (config.rank_weight, "rank_loss"),
                                                  (config.sparsity_weight, "sparsity_loss")))
    assert float(terms["loss"]) == pytest.approx(others + 2.0 * np.mean(distances), rel=1e-4)


def test_step_supervision_refuses_samples_without_steps():
    from tpt_keras import experiment
    from tpt_keras.config import get_preset

    samples = [Sample(key="a/1", path="", score=50.0, difficulty=2.0, group="x", split="train",
                      steps=((1, 30), (2, 40))),
               Sample(key="a/2", path="", score=50.0, difficulty=2.0, group="x", split="train")]
    config = get_preset("finediving", step_weight=1.0)
    with pytest.raises(ValueError, match="a/2"):
        experiment.training_step_boundaries(config, samples)
    assert experiment.training_step_boundaries(config.replace(step_weight=0.0), samples) is None


def test_step_band_draws_each_step_on_the_clip_axis():
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    visualize.step_band(axis, [2.5, 6.5], 10, labels=["Inward", "Soms", "Entry"])
    extents = [path.get_extents() for collection in axis.collections for path in collection.get_paths()]
    spans = sorted((round(e.x0, 6), round(e.x1, 6)) for e in extents)
    assert spans == [(-0.5, 2.5), (2.5, 6.5), (6.5, 9.5)]
    assert [t.get_text() for t in axis.texts] == ["Inward", "Soms", "Entry"]
    plt.close(figure)


def test_parsing_report_needs_labels_and_two_parts():
    from tpt_keras.experiment.evaluation import parsing_report

    attention = np.zeros((1, 1, 10, 3))
    attention[0, 0] = _one_hot_attention([1, 5, 8], 10)
    report = parsing_report(attention, [np.array([2.5, 6.5])])
    # the worked example of docs/parsing.md: errors 0.5 and 0, IoU (3/3.5 + 3.5/4 + 1) / 3
    assert report["model"]["boundary_mae"] == pytest.approx(0.25)
    assert report["model"]["mean_iou"] == pytest.approx((3 / 3.5 + 3.5 / 4 + 1) / 3)
    assert report["uniform"]["boundary_mae"] == pytest.approx((abs(2.5 - 4.5) + abs(6.5 - 4.5)) / 2)
    assert parsing_report(attention, [None]) is None
    assert parsing_report(attention[..., :1], [np.array([2.5])]) is None
