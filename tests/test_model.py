"""TPTModel, its config and its optimizer: known-answer losses, the steps, the exemplar-bank path,
serialisation (with and without a backbone), ablation switches, mixed precision."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tpt_keras.ops import groups, losses
from tpt_keras.config import PRESETS, TPTConfig, get_preset
from tpt_keras.models.tpt_model import TPTModel
from tpt_keras.models.optimizer import MultiRateAdam, build_optimizer

T, D, DIM, K = 6, 8, 8, 3
INTERVALS = np.array([[-10.0, -3.0], [-3.0, 0.0], [0.0, 3.0], [3.0, 10.0]])


def tiny_config(**overrides):
    options = {"protocol.num_clips": T}
    options.update(feature_dim=D, hidden_dim=DIM, ffn_dim=DIM, num_heads=2,
                   head_hidden_dim=8, num_queries=K, num_intervals=4, score_max=10.0,
                   batch_size=4, dropout=0.1, learning_rate=1e-4, head_learning_rate=1e-3)
    options.update(overrides)
    return get_preset("synthetic", **options)


def pair_batch(batch=4, seed=0, frames=None):
    rng = np.random.default_rng(seed)
    shape = (batch, T, D) if frames is None else (batch, T) + frames
    return {
        "query": rng.standard_normal(shape).astype(np.float32),
        "exemplar": rng.standard_normal(shape).astype(np.float32),
        "query_score": rng.uniform(0, 10, batch).astype(np.float32),
        "exemplar_score": rng.uniform(0, 10, batch).astype(np.float32),
        "query_difficulty": rng.uniform(2, 3.5, batch).astype(np.float32),
    }


def eval_batch(batch=2, exemplars=3, seed=1, frames=None):
    rng = np.random.default_rng(seed)
    shape = (T, D) if frames is None else (T,) + frames
    mask = np.ones((batch, exemplars), np.float32)
    mask[0, -1] = 0.0
    return {
        "query": rng.standard_normal((batch,) + shape).astype(np.float32),
        "exemplars": rng.standard_normal((batch, exemplars) + shape).astype(np.float32),
        "exemplar_scores": rng.uniform(0, 10, (batch, exemplars)).astype(np.float32),
        "exemplar_mask": mask,
        "query_difficulty": np.array([2.0, 3.5], np.float32)[:batch],
        "score": rng.uniform(0, 30, batch).astype(np.float32),
    }


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


# ----------------------------------------------------------------------------- config
def test_presets_and_faithful_values():
    assert list(PRESETS)[0] == "mtl_aqa_dd"
    assert set(PRESETS) == {"mtl_aqa_dd", "mtl_aqa_nodd", "aqa7", "jigsaws", "finediving", "custom", "synthetic",
                            "synthetic_finediving"}
    cfg = get_preset("mtl_aqa_dd")
    sizes = (cfg.num_queries, cfg.num_layers, cfg.hidden_dim, cfg.ffn_dim, cfg.num_heads)
    assert sizes == (5, 2, 512, 512, 8)
    assert (cfg.rank_margin, cfg.sparsity_weight, cfg.temperature_init) == (3.2, 0.05, 0.07)
    assert (cfg.learning_rate, cfg.head_learning_rate, cfg.epochs, cfg.batch_size, cfg.seed) == (
        1e-4, 1e-3, 250, 24, 12)
    assert cfg.attention_scale == "d" and cfg.self_attention == "first_layer_after_ffn"
    assert cfg.protocol.swap_resize and cfg.protocol.test_exemplar_start == 3 and cfg.score_max == 30
    assert cfg.frames_per_video == 103 and get_preset("jigsaws").frames_per_video == 160
    assert get_preset("mtl_aqa_nodd").score_max == 100 and not get_preset("aqa7").use_difficulty
    assert cfg.head_lr_multiplier == pytest.approx(10.0)


def test_config_validation_and_overrides():
    assert get_preset("aqa7", action_class="diving").action_class == "diving"
    with pytest.raises(ValueError, match="'nope'"):
        get_preset("nope")
    with pytest.raises(ValueError, match=r"'hiden_dim' \(did you mean 'hidden_dim'\?\)"):
        get_preset("mtl_aqa_dd", hiden_dim=3)
    with pytest.raises(ValueError, match="'sqrt'"):
        get_preset("mtl_aqa_dd", attention_scale="sqrt")
    with pytest.raises(ValueError, match="1.5"):
        get_preset("mtl_aqa_dd", dropout=1.5)
    with pytest.raises(ValueError, match="divisible"):
        get_preset("mtl_aqa_dd", num_heads=7)
    with pytest.raises(ValueError, match="'bowling'"):
        get_preset("aqa7", action_class="bowling")
    with pytest.raises(ValueError, match="-1"):
        get_preset("mtl_aqa_dd", num_queries=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("mtl_aqa_dd").epochs = 3


def test_config_json_round_trip(tmp_path):
    cfg = get_preset("jigsaws", fold=2, action_class="knot_tying")
    cfg.save(tmp_path / "run" / "config.json")
    assert TPTConfig.load(tmp_path / "run" / "config.json") == cfg
    values = json.loads((tmp_path / "run" / "config.json").read_text())
    values["unknown_setting"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match=r"bad.json.*'unknown_setting'"):
        TPTConfig.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- losses
def test_pair_losses_known_answer():
    model = TPTModel(tiny_config(cls_weight=2.0), INTERVALS)
    batch = {"query_score": np.array([1.0]), "exemplar_score": np.array([2.5])}
    # delta = +1.5 -> interval 2 [0, 3), target 0.5; reverse -1.5 -> interval 1 (-3, 0], target 0.5.
    outputs = {"log_probs": np.log(np.full((2, 4), 0.25, np.float32)),
               "regression": np.full((2, 4), 0.7, np.float32),
               "attention": np.full((2, 2, T, K), 1.0 / T, np.float32)}
    terms = model.compute_pair_losses(batch, outputs)
    assert float(terms["cls_loss"]) == pytest.approx(2 * np.log(4), rel=1e-6)  # both directions
    assert float(terms["reg_loss"]) == pytest.approx(2 * 0.2 ** 2, rel=1e-5)
    # Uniform attention over 6 clips, 3 queries: every centre is 3.5. Per layer: rank
    # 2 * 3.2 (zero gaps) + (3.2 - 2.5) + (3.2 - 2.5) = 7.8; sparsity (2.5+1.5+.5+.5+1.5+2.5)/6 = 1.5.
    assert float(terms["rank_loss"]) == pytest.approx(2 * 7.8, rel=1e-6)
    assert float(terms["sparsity_loss"]) == pytest.approx(2 * 1.5, rel=1e-6)
    # Total: 2 cls + reg + 2 layers x (1.0 rank + 0.05 sparsity), from the given attention only.
    expected = 2 * 2 * np.log(4) + 0.08 + 2 * (7.8 + 0.05 * 1.5)
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-6)
    # The forward pass adds no loss of its own: the attention terms exist in one place.
    model(pair_batch(), training=False)
    assert model.losses == []


def test_attention_losses_are_over_query_and_exemplar_of_every_layer():
    model = TPTModel(tiny_config(rank_weight=0.5), INTERVALS)
    batch = pair_batch()
    outputs = model(batch, training=False)
    attention = np.asarray(outputs["attention"])
    assert attention.shape == (8, 2, T, K)  # query videos then exemplar videos
    assert tuple(outputs["log_probs"].shape) == (8, 4)
    terms = model.compute_pair_losses(batch, outputs)
    rank = sum(float(losses.ranking_loss(attention[:, l], 3.2)) for l in range(2))
    sparsity = sum(float(losses.sparsity_loss(attention[:, l])) for l in range(2))
    assert float(terms["rank_loss"]) == pytest.approx(rank, rel=1e-5)
    assert float(terms["sparsity_loss"]) == pytest.approx(sparsity, rel=1e-5)


def test_test_step_reports_every_term_and_their_weighted_sum():
    model = TPTModel(tiny_config(rank_weight=0.5, sparsity_weight=0.25), INTERVALS)
    model.compile()
    batch = pair_batch()
    logs = model.test_on_batch(batch, return_dict=True)
    assert sorted(logs) == ["cls_loss", "loss", "rank_loss", "reg_loss", "sparsity_loss"]
    outputs = model(batch, training=False)
    terms = model.compute_pair_losses(batch, outputs)
    for name in logs:
        assert logs[name] == pytest.approx(float(terms[name]), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + logs["reg_loss"]
                                         + 0.5 * logs["rank_loss"] + 0.25 * logs["sparsity_loss"],
                                         rel=1e-5)


def test_total_loss_is_score_losses_plus_weighted_attention_losses_of_every_layer():
    """The decoder's attention terms count once in the total, computed from the returned attention."""
    cfg = tiny_config(rank_weight=0.5, sparsity_weight=0.25, diversity_weight=0.125,
                      cls_weight=1.5, reg_weight=0.75)
    model = TPTModel(cfg, INTERVALS)
    batch = pair_batch()
    outputs = model(batch, training=False)
    terms = model.compute_pair_losses(batch, outputs)
    attention = np.asarray(outputs["attention"])  # (2B, L, T, K)
    by_hand = 1.5 * float(terms["cls_loss"]) + 0.75 * float(terms["reg_loss"])
    for l in range(cfg.num_layers):
        by_hand += (0.5 * float(losses.ranking_loss(attention[:, l], cfg.rank_margin))
                    + 0.25 * float(losses.sparsity_loss(attention[:, l]))
                    + 0.125 * float(losses.diversity_loss(attention[:, l], cfg.diversity_sigma)))
    assert float(terms["loss"]) == pytest.approx(by_hand, rel=1e-5)
    assert model.losses == []


def test_attention_loss_gradient_flows_through_the_returned_attention():
    """With the score losses off, the total's gradient is that of the attention losses written
    out from the pure functions."""
    import tensorflow as tf

    model = TPTModel(tiny_config(cls_weight=0.0, reg_weight=0.0, dropout=0.0,
                                 diversity_weight=0.5), INTERVALS)
    batch = pair_batch()
    variables = model.part_encoder.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        outputs = model(batch, training=True)
        total = model.compute_pair_losses(batch, outputs)["loss"]
        attention = outputs["attention"]
        added = sum(losses.ranking_loss(attention[:, l], 3.2)
                    + 0.05 * losses.sparsity_loss(attention[:, l])
                    + 0.5 * losses.diversity_loss(attention[:, l], 1.0) for l in range(2))
    ours, expected = tape.gradient(total, variables), tape.gradient(added, variables)
    assert any(float(tf.reduce_max(tf.abs(g))) > 1e-4 for g in expected)
    for variable, a, e in zip(variables, ours, expected):
        if e is None:  # e.g. the last layer's FFN: the attention maps do not depend on it
            assert a is None or float(tf.reduce_max(tf.abs(a))) == 0.0, variable.path
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-7,
                                       err_msg=variable.path)


def test_attention_losses_are_inside_the_gradient_tape():
    # Graph mode (tf.function), as in fit. With the score losses off, only the decoder's
    # attention losses can move the query embedding;
    # the heads get zero gradients, so Adam leaves them exactly where they were.
    model = TPTModel(tiny_config(cls_weight=0.0, reg_weight=0.0), INTERVALS)
    model.compile()
    queries = np.asarray(model.part_encoder.query_embedding).copy()
    head = np.asarray(model.regressor.cls_head_output.kernel).copy()
    logs = model.train_on_batch(pair_batch(), return_dict=True)
    assert logs["loss"] > 0
    assert np.abs(np.asarray(model.part_encoder.query_embedding) - queries).max() > 1e-5
    np.testing.assert_array_equal(np.asarray(model.regressor.cls_head_output.kernel), head)


# ----------------------------------------------------------------------------- accumulation
def unit_terms_and_gradients(model, batch, rows, interval_counts=None, num_units=1):
    """Loss terms and gradients of ``batch``'s rows ``rows`` computed directly (eager)."""
    import tensorflow as tf

    unit = {key: value[rows] for key, value in batch.items()}
    with tf.GradientTape() as tape:
        outputs = model(unit, training=True)
        terms = model.compute_pair_losses(unit, outputs, interval_counts, num_units)
    return terms, tape.gradient(terms["loss"], model.trainable_variables)


@pytest.mark.parametrize("batch_size", [4, 3])  # 2 micro-batches of 2; of 2 and 1 (partial)
def test_accumulated_step_is_the_mean_of_its_micro_batches(batch_size):
    """accumulate_steps=2, micro-batches of ceil(4 / 2) = 2 pairs: one SGD step moves the
    weights by lr x the mean of the micro-batches' gradients and logs their terms' mean; a
    partial batch of 3 makes micro-batches of 2 and 1, each weighing one half."""
    model = TPTModel(tiny_config(dropout=0.0, accumulate_steps=2, batch_size=4,
                                 loss_normalization="per_replica"), INTERVALS)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    batch = pair_batch(batch_size, seed=3)
    before = [np.asarray(v).copy() for v in model.trainable_variables]
    units = [unit_terms_and_gradients(model, batch, rows)
             for rows in (slice(0, 2), slice(2, batch_size))]
    logs = model.train_on_batch(batch, return_dict=True)
    for name in ("loss", "cls_loss", "reg_loss", "rank_loss", "sparsity_loss"):
        expected = np.mean([float(terms[name]) for terms, _ in units])
        assert logs[name] == pytest.approx(expected, rel=1e-5), name
    for variable, start, first, second in zip(model.trainable_variables, before, units[0][1],
                                              units[1][1]):
        expected = start - 0.5 * (np.asarray(first) + np.asarray(second)) / 2
        np.testing.assert_allclose(np.asarray(variable), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=variable.path)


def test_global_normalisation_counts_intervals_over_the_micro_batches():
    """With "global" the logged regression term is that of the whole batch at once; with
    "per_replica" the mean of the micro-batches' own per-interval means: here they differ."""
    batch = pair_batch(4, seed=3)
    # Deltas of 4 pairs, chosen so that the two halves hold intervals 2 and 3 unequally.
    batch["query_score"] = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    batch["exemplar_score"] = np.array([2.0, 2.5, 5.0, 2.0], np.float32)
    values = {}
    for normalization in ("per_replica", "global"):
        model = TPTModel(tiny_config(dropout=0.0, accumulate_steps=2, batch_size=4,
                                     loss_normalization=normalization), INTERVALS)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        values[normalization] = model.train_on_batch(batch, return_dict=True)["reg_loss"]
        whole = model.compute_pair_losses(batch, model(batch, training=False))["reg_loss"]
        halves = [model.compute_pair_losses(unit, model(unit, training=False))["reg_loss"]
                  for unit in ({k: v[:2] for k, v in batch.items()},
                               {k: v[2:] for k, v in batch.items()})]
        expected = float(whole) if normalization == "global" else float(np.mean(halves))
        assert values[normalization] == pytest.approx(expected, rel=1e-5), normalization
    assert abs(values["global"] - values["per_replica"]) > 1e-3


# ----------------------------------------------------------------------------- optimizer
def test_head_variables_take_ten_times_larger_first_adam_steps():
    model = TPTModel(tiny_config(dropout=0.0), INTERVALS)
    model.compile(run_eagerly=True)
    assert isinstance(model.optimizer, MultiRateAdam)
    before = {v.path: np.asarray(v).copy() for v in model.trainable_variables}
    model.train_on_batch(pair_batch())
    head, rest = [], []
    for v in model.trainable_variables:
        step = np.abs(np.asarray(v) - before[v.path]).reshape(-1)
        step = step[step > 0]
        (head if "_head_" in v.path else rest).append(step)
    head, rest = np.concatenate(head), np.concatenate(rest)
    # The first Adam step is lr * g / (|g| + eps): lr in size wherever the gradient is non-tiny.
    assert np.median(head) == pytest.approx(1e-3, rel=0.02)
    assert np.median(rest) == pytest.approx(1e-4, rel=0.02)
    assert head.max() <= 1e-3 * 1.001 and rest.max() <= 1e-4 * 1.001
    multipliers = [model.optimizer.multiplier_for(v) for v in model.trainable_variables]
    assert multipliers.count(10.0) == 8  # cls/reg heads: 2 Dense layers each, kernel + bias


def two_adam_steps(strategy, grads):
    """Two graph-mode steps of MultiRateAdam(1e-4, "head" x10, epsilon 1e-8) under ``strategy``
    on a variable tagged "head" and an untagged one; ``grads`` (steps, 2, 3). Returns the two (3,)."""
    import tensorflow as tf

    with strategy.scope():
        # The rate follows the tag, not the name: the untagged variable is named like a head.
        head = keras.Variable(np.zeros(3, np.float32), name="backbone_kernel")
        rest = keras.Variable(np.zeros(3, np.float32), name="cls_head_kernel")
        head.learning_rate_group = "head"
        optimizer = MultiRateAdam(1e-4, group_multipliers={"head": 10.0}, epsilon=1e-8)
        optimizer.build([head, rest])

    @tf.function
    def step(g_head, g_rest):
        def replica_step(g_head, g_rest):
            # Each replica holds gradient / replicas: the optimizer sums them back.
            scale = 1.0 / strategy.num_replicas_in_sync
            optimizer.apply([g_head * scale, g_rest * scale], [head, rest])
        strategy.run(replica_step, args=(g_head, g_rest))

    for g in grads:
        step(tf.constant(g[0], tf.float32), tf.constant(g[1], tf.float32))
    return np.asarray(head, np.float64), np.asarray(rest, np.float64)


MIRRORED_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
from test_model import two_adam_steps
grads = np.array(sys.argv[2:], np.float64).reshape(2, 2, 3)
head, rest = two_adam_steps(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), grads)
print("RESULT", *np.concatenate([head, rest]).tolist())
"""

# (steps, [head, rest], 3): large and tiny gradients (where epsilon matters).
ADAM_GRADS = np.array([[[0.5, -2e-8, 3.0], [1.0, 4e-9, -0.25]],
                       [[-0.1, 1e-8, 2.0], [0.3, -6e-9, 0.5]]])


def hand_adam(gradients, lr, epsilon=1e-8, beta_1=0.9, beta_2=0.999):
    """Keras' Adam written out: w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""
    w = m = v = np.zeros_like(gradients[0])
    for t, g in enumerate(gradients, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        w = w - lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (np.sqrt(v) + epsilon)
    return w


def assert_two_adams_by_hand(head, rest):
    np.testing.assert_allclose(head, hand_adam(ADAM_GRADS[:, 0], 1e-3), rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(rest, hand_adam(ADAM_GRADS[:, 1], 1e-4), rtol=1e-5, atol=1e-11)
    # Keras' default epsilon 1e-7 would give a visibly different step on the tiny gradient.
    assert not np.isclose(hand_adam(ADAM_GRADS[:, 1], 1e-4, epsilon=1e-7)[1], rest[1], rtol=1e-2)


def test_two_rate_adam_equals_two_adams_by_hand():
    """Two graph-mode steps of one MultiRateAdam equal Adam at 1e-3 on the head variable and
    Adam at 1e-4 on the other."""
    import tensorflow as tf

    assert_two_adams_by_hand(*two_adam_steps(tf.distribute.get_strategy(), ADAM_GRADS))


@pytest.mark.slow
def test_two_rate_adam_by_hand_on_two_replicas():
    """The same under MirroredStrategy on two logical CPUs, where the optimizer updates each
    replica's copy of a variable (named ".../replica_1")."""
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(tests)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, tests]
        + [repr(float(x)) for x in ADAM_GRADS.reshape(-1)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")][-1]
    assert_two_adams_by_hand(*np.array(line.split()[1:], np.float64).reshape(2, 3))


def test_optimizer_uses_no_private_keras_api():
    import ast
    import inspect

    from tpt_keras.models import optimizer as module

    private = [node.attr for node in ast.walk(ast.parse(inspect.getsource(module)))
               if isinstance(node, ast.Attribute) and node.attr.startswith("_")
               and not node.attr.endswith("__")]
    assert private == []


def test_optimizer_config_round_trip():
    optimizer = build_optimizer(get_preset("mtl_aqa_dd"))
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, MultiRateAdam)
    assert clone.group_multipliers == {"head": 10.0}
    assert float(clone.learning_rate) == pytest.approx(1e-4)
    model = TPTModel(tiny_config(), INTERVALS)
    assert clone.multiplier_for(model.regressor.cls_head_hidden.kernel) == 10.0
    assert clone.multiplier_for(model.part_encoder.decoder_layers[0].key_dense.kernel) == 1.0


def test_compile_refuses_losses_and_metrics_it_would_ignore():
    model = TPTModel(tiny_config(), INTERVALS)
    for argument in (dict(loss="mse"), dict(metrics=["mae"]), dict(loss_weights=[1.0]),
                     dict(weighted_metrics=["mae"])):
        name = next(iter(argument))
        with pytest.raises(ValueError, match=rf"does not take {name}: .*cls_weight"):
            model.compile(**argument)
    with pytest.raises(ValueError, match="loss, metrics"):
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.compile(optimizer="sgd", run_eagerly=True)  # other arguments are Keras'
    assert isinstance(model.optimizer, keras.optimizers.SGD) and model.run_eagerly


# ----------------------------------------------------------------------------- prediction
def test_predict_matches_the_exemplar_bank_path():
    model = TPTModel(tiny_config(), INTERVALS)
    batch = eval_batch()
    out = model.predict_on_batch(batch)
    assert out["score"].shape == (2,) and out["exemplar_scores"].shape == (2, 3)
    assert out["attention"].shape == (2, 2, T, K)
    query_parts, query_attention = model.encode(batch["query"])
    np.testing.assert_allclose(out["attention"], np.asarray(query_attention), rtol=1e-5, atol=1e-6)
    expected = np.zeros((2, 3))
    for e in range(3):
        exemplar_parts, _ = model.encode(batch["exemplars"][:, e])
        relative = np.asarray(model.relative_scores(exemplar_parts, query_parts))
        expected[:, e] = (relative + batch["exemplar_scores"][:, e]) * batch["query_difficulty"]
    np.testing.assert_allclose(out["exemplar_scores"], expected, rtol=1e-5, atol=1e-4)
    # Masked mean: query 0 uses exemplars 0 and 1 only.
    np.testing.assert_allclose(out["score"], [expected[0, :2].mean(), expected[1].mean()], rtol=1e-5)
    # Padding content is irrelevant.
    changed = dict(batch, exemplars=batch["exemplars"].copy())
    changed["exemplars"][0, -1] += 100.0
    np.testing.assert_allclose(model.predict_on_batch(changed)["score"], out["score"], rtol=1e-6)


def test_predict_without_difficulty():
    model = TPTModel(tiny_config(use_difficulty=False), INTERVALS)
    batch = eval_batch()
    out = model.predict_on_batch(batch)
    query_parts, _ = model.encode(batch["query"])
    exemplar_parts, _ = model.encode(batch["exemplars"][:, 0])
    relative = np.asarray(model.relative_scores(exemplar_parts, query_parts))
    np.testing.assert_allclose(out["exemplar_scores"][:, 0], relative + batch["exemplar_scores"][:, 0],
                               rtol=1e-5, atol=1e-5)


def test_relative_scores_decode_into_the_intervals():
    model = TPTModel(tiny_config(), INTERVALS)
    parts, _ = model.encode(pair_batch()["query"])
    relative = np.asarray(model.relative_scores(parts, parts[::-1]))
    log_probs, regression = model.regressor(parts, parts[::-1])
    manual = np.asarray(groups.decode_relative_scores(log_probs, regression, INTERVALS))
    np.testing.assert_allclose(relative, manual, rtol=1e-6)
    assert np.all((relative >= -10) & (relative <= 10))


# ----------------------------------------------------------------------------- serialisation
def test_config_round_trip_and_keras_file(tmp_path):
    model = TPTModel(tiny_config(), INTERVALS)
    model.compile(run_eagerly=True)
    model.train_on_batch(pair_batch())
    batch = eval_batch()
    expected = model.predict_on_batch(batch)

    clone = TPTModel.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict_on_batch(batch)["score"], expected["score"], rtol=1e-6)

    path = tmp_path / "tpt.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, TPTModel)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.intervals, INTERVALS)
    for key in ("score", "exemplar_scores", "attention"):
        np.testing.assert_array_equal(loaded.predict_on_batch(batch)[key], expected[key])
    assert isinstance(loaded.optimizer, MultiRateAdam)
    assert loaded.optimizer.group_multipliers == model.optimizer.group_multipliers
    assert int(loaded.optimizer.iterations) == 1


def tiny_backbone(frames):
    inputs = keras.Input(frames)
    x = keras.layers.Conv3D(4, 1, name="clip_conv")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(D, name="clip_dense")(x), name="tiny_backbone")


def test_backbone_folds_videos_and_round_trips(tmp_path):
    frames = (2, 4, 4, 3)
    backbone = tiny_backbone(frames)
    model = TPTModel(tiny_config(), INTERVALS, backbone=backbone)
    batch = eval_batch(frames=frames)
    out = model.predict_on_batch(batch)
    # Same as running the backbone per clip, then a feature-level model with the same weights.
    features_model = TPTModel(tiny_config(), INTERVALS)
    features_model.part_encoder.set_weights(model.part_encoder.get_weights())
    features_model.regressor.set_weights(model.regressor.get_weights())
    def features(videos):
        flat = videos.reshape((-1,) + frames)
        return np.asarray(backbone(flat)).reshape(videos.shape[:-4] + (D,))
    feature_batch = dict(batch, query=features(batch["query"]), exemplars=features(batch["exemplars"]))
    np.testing.assert_allclose(features_model.predict_on_batch(feature_batch)["score"], out["score"],
                               rtol=1e-5, atol=1e-5)
    # Training on frames works and the .keras file restores the backbone.
    model.compile(run_eagerly=True)
    logs = model.train_on_batch(pair_batch(frames=frames), return_dict=True)
    assert np.isfinite(logs["loss"])
    model.save(tmp_path / "with_backbone.keras")
    loaded = keras.saving.load_model(tmp_path / "with_backbone.keras")
    assert loaded.backbone is not None and loaded.backbone.name == "tiny_backbone"
    np.testing.assert_array_equal(loaded.predict_on_batch(batch)["score"],
                                  model.predict_on_batch(batch)["score"])


# ----------------------------------------------------------------------------- ablations
@pytest.mark.parametrize("overrides, metric_names, num_parts", [
    (dict(part_encoder="holistic"), ["cls_loss", "loss", "reg_loss"], 1),
    (dict(part_encoder="adaptive_pool"), ["cls_loss", "loss", "reg_loss"], K),
    (dict(part_encoder="temporal_conv"), ["cls_loss", "loss", "reg_loss"], K),
    (dict(rank_weight=0.0, diversity_weight=1.0),
     ["cls_loss", "diversity_loss", "loss", "rank_loss", "reg_loss", "sparsity_loss"], K),
    (dict(clip_positional_encoding=True, query_positional_encoding=True, self_attention="every_layer",
          attention_scale="sqrt_d", relative_fusion="pooled"),
     ["cls_loss", "loss", "rank_loss", "reg_loss", "sparsity_loss"], K),
])
def test_ablation_switches_train(overrides, metric_names, num_parts):
    model = TPTModel(tiny_config(**overrides), INTERVALS)
    model.compile(run_eagerly=True)
    logs = model.train_on_batch(pair_batch(), return_dict=True)
    assert sorted(logs) == metric_names
    assert all(np.isfinite(v) for v in logs.values())
    parts, _ = model.encode(pair_batch()["query"])
    assert tuple(parts.shape) == (4, num_parts, DIM)
    if overrides.get("part_encoder", "decoder") != "decoder":
        assert model.losses == []


def test_backbone_feature_size_must_match():
    with pytest.raises(ValueError, match="outputs 8 features per clip but config.feature_dim is 16"):
        TPTModel(tiny_config(feature_dim=16), INTERVALS, backbone=tiny_backbone((2, 4, 4, 3)))


def test_invalid_intervals():
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        TPTModel(tiny_config(), INTERVALS[:3])
    with pytest.raises(ValueError, match="left <= right"):
        TPTModel(tiny_config(), INTERVALS[:, ::-1])


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training(policy):
    keras.config.set_dtype_policy(policy)
    model = TPTModel(tiny_config(), INTERVALS)
    model.compile(run_eagerly=True)
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.optimizer.inner_optimizer, MultiRateAdam)
    before = np.asarray(model.regressor.cls_head_output.kernel).copy()
    for _ in range(2):
        logs = model.train_on_batch(pair_batch(), return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert not np.array_equal(np.asarray(model.regressor.cls_head_output.kernel), before)
    out = model.predict_on_batch(eval_batch())
    assert out["score"].dtype == np.float32 and out["attention"].dtype == np.float32
    assert np.all(np.isfinite(out["score"]))


def test_aggregate_exemplar_scores_by_hand():
    from tpt_keras.ops.exemplar_scores import aggregate_exemplar_scores

    relative = np.array([[1.0, -2.0, 5.0], [0.5, 0.5, 0.5]])
    targets = np.array([[20.0, 24.0, 0.0], [10.0, 12.0, 14.0]])
    mask = np.array([[1, 1, 0], [0, 0, 0]], np.float32)
    difficulty = np.array([2.0, 3.0])
    scores, per_exemplar = aggregate_exemplar_scores(relative, targets, mask, difficulty, True)
    np.testing.assert_allclose(np.asarray(per_exemplar), [[42, 44, 10], [31.5, 37.5, 43.5]])
    np.testing.assert_allclose(np.asarray(scores), [43.0, 0.0])  # masked mean; all-padding -> 0
    scores, _ = aggregate_exemplar_scores(relative, targets, np.ones((2, 3)), difficulty, False)
    np.testing.assert_allclose(np.asarray(scores), [(21 + 22 + 5) / 3, 12.5])
