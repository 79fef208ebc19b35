"""Several seeds, honestly reported: mean ± std over seeds and a bootstrap
interval over test videos, against hand computations and a naive loop."""

import math

import numpy as np
import pytest
from scipy import stats

from tpt_keras.ops import metrics


def test_seed_statistics_known_answer():
    true = [1.0, 2.0, 3.0, 4.0]
    # seed A exact: ρ 1, R-ℓ2 0. Seed B swaps neighbours: rank differences ±1, Σd² = 4,
    # ρ = 1 - 6·4 / (4·15) = 0.6; every error is 1 on a true range of 3: R-ℓ2 = 100 / 9.
    result = metrics.seed_statistics([[1, 2, 3, 4], [2, 1, 4, 3]], true, num_bootstrap=50)
    assert [r["spearman"] for r in result["per_seed"]] == pytest.approx([1.0, 0.6])
    assert [r["r_l2"] for r in result["per_seed"]] == pytest.approx([0.0, 100 / 9])
    assert result["mean"]["spearman"] == pytest.approx(0.8)
    assert result["std"]["spearman"] == pytest.approx(math.sqrt(0.08))  # ddof 1: (0.2² + 0.2²) / 1
    assert result["mean"]["r_l2"] == pytest.approx(50 / 9)
    assert result["std"]["r_l2"] == pytest.approx(math.sqrt(2) * 50 / 9)


def test_seed_statistics_one_perfect_seed_has_a_point_interval():
    true = np.arange(30.0)
    result = metrics.seed_statistics([true], true, num_bootstrap=100)
    assert result["std"] == {"spearman": 0.0, "r_l2": 0.0}
    assert result["ci95"]["spearman"] == pytest.approx([1.0, 1.0])
    assert result["ci95"]["r_l2"] == pytest.approx([0.0, 0.0])


def test_bootstrap_interval_matches_a_naive_loop():
    rng = np.random.default_rng(4)
    true = rng.uniform(20, 100, 40)
    predictions = true + rng.normal(0, [[8.0], [15.0], [25.0]], (3, 40))
    result = metrics.seed_statistics(predictions, true, num_bootstrap=300, seed=7)
    draws = np.random.default_rng(7).integers(0, 40, (300, 40))  # the documented draw
    rhos, errors = [], []
    for rows in draws:
        t = true[rows]
        rhos.append(sum(stats.spearmanr(p[rows], t)[0] for p in predictions) / 3)
        errors.append(sum(100 * np.mean(((p[rows] - t) / (t.max() - t.min())) ** 2) for p in predictions) / 3)
    assert result["ci95"]["spearman"] == pytest.approx(list(np.percentile(rhos, [2.5, 97.5])))
    assert result["ci95"]["r_l2"] == pytest.approx(list(np.percentile(errors, [2.5, 97.5])))
    low, high = result["ci95"]["spearman"]
    assert low < result["mean"]["spearman"] < high


def test_rows_average_by_fisher_z_by_hand():
    true = np.array([1.0, 2.0, 3.0, 4.0])
    swapped = np.array([[2.0, 1, 4, 3]])        # ρ = 1 - 6·4/(4·15) = 0.6
    one_swap = np.array([[2.0, 1, 3, 4]])       # Σd² = 2: ρ = 1 - 12/60 = 0.8
    result = metrics.grouped_seed_statistics([[(swapped, true)], [(one_swap, true)]],
                                             num_bootstrap=10)
    expected = math.tanh((math.atanh(0.6) + math.atanh(0.8)) / 2)
    assert result["per_seed"][0]["spearman"] == pytest.approx(expected)
    # R-ℓ2: every error of `swapped` is 1 on a range of 3 (100/9), `one_swap` has two of four (50/9)
    assert result["per_seed"][0]["r_l2"] == pytest.approx((100 / 9 + 50 / 9) / 2)


def test_grouped_interval_matches_a_naive_loop():
    """A figure of two groups (two folds, then one run), two seeds: the documented draws, run
    after run, and the nested Fisher-z means written out with scipy."""
    rng = np.random.default_rng(5)
    runs = []
    for size in (12, 15, 20):
        true = rng.uniform(0, 30, size)
        runs.append((true + rng.normal(0, [[4.0], [9.0]], (2, size)), true))
    result = metrics.grouped_seed_statistics([runs[:2], runs[2:]], num_bootstrap=60, seed=11)
    z = np.arctanh
    draw = np.random.default_rng(11)
    draws = [draw.integers(0, t.size, (60, t.size)) for _, t in runs]

    def rho(rows):  # mean over seeds of tanh(mean(z(tanh(mean(z(fold ρ)))), z(run ρ)))
        values = []
        for s in range(2):
            r = [stats.spearmanr(p[s][i], t[i])[0] for (p, t), i in zip(runs, rows)]
            with np.errstate(divide="ignore"):  # a resample with ρ = ±1: z = ±inf, tanh gives ±1
                values.append(np.tanh((z(np.tanh((z(r[0]) + z(r[1])) / 2)) + z(r[2])) / 2))
        return np.mean(values)

    everything = [np.arange(t.size) for _, t in runs]
    assert result["mean"]["spearman"] == pytest.approx(rho(everything))
    naive = [rho([d[b] for d in draws]) for b in range(60)]
    assert result["ci95"]["spearman"] == pytest.approx(list(np.percentile(naive, [2.5, 97.5])))


@pytest.mark.slow
def test_train_seeds_and_evaluate_them(tmp_path, capsys):
    """`tpt train synthetic --seeds 2` makes seed_0/ and seed_1/; `tpt evaluate` over the folder
    reports, per checkpoint, the mean and std of what `tpt evaluate` gives each seed alone."""
    import json

    from tpt_keras.cli import main as cli
    from tpt_keras.config import TPTConfig

    output = str(tmp_path / "seeds")
    tiny = [f"--set={name}=16" for name in ("feature_dim", "hidden_dim", "ffn_dim", "head_hidden_dim")]
    assert cli.main(["train", "synthetic", "--output", output, "--seeds", "2", "--epochs", "2",
                     "--verbose", "0", "--set", "batch_size=64", *tiny]) == 0
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir() if p.name.startswith("seed_")) == \
        ["seed_0", "seed_1"]
    assert [TPTConfig.load(tmp_path / "seeds" / f"seed_{s}" / "config.json").seed for s in (0, 1)] == [0, 1]
    capsys.readouterr()
    alone = {}
    for which in ("best", "last"):
        for seed in (0, 1):
            assert cli.main(["evaluate", f"{output}/seed_{seed}", "--checkpoint", which, "--json"]) == 0
            alone[which, seed] = json.loads(capsys.readouterr().out)["runs"][0]
    assert cli.main(["evaluate", output, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeds"] == [0, 1] and result["samples"] == 150
    for which in ("best", "last"):
        stats_ = result["checkpoints"][which]
        for name in ("spearman", "r_l2"):
            values = [alone[which, 0][name], alone[which, 1][name]]
            assert stats_["mean"][name] == pytest.approx(np.mean(values))
            assert stats_["std"][name] == pytest.approx(np.std(values, ddof=1))
            low, high = stats_["ci95"][name]
            assert low <= high
    assert cli.main(["evaluate", output]) == 0
    table = capsys.readouterr().out
    assert "val-selected (best)" in table and "last epoch" in table and "2 seeds (0, 1)" in table
    assert "selected on the test split itself" in table
