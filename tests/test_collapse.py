"""The end of training names a collapsed model: the validation predictions' spread is logged each
epoch (``val_spread_ratio``) and ``train_run`` warns when the last one is below
``metrics.COLLAPSE_FRACTION`` (0.1)."""

import numpy as np

from tpt_keras.experiment import launch
from tpt_keras.runtime import run_folder


def test_the_logged_spread_ratio_is_read_back(tmp_path):
    paths = run_folder.RunPaths(str(tmp_path))
    columns = ["epoch", "loss", "val_spearman", "val_r_l2", "val_spread_ratio"]
    run_folder.write_log(paths.log, [
        {"epoch": 0, "loss": 3.0, "val_spearman": 0.5, "val_r_l2": 2.0, "val_spread_ratio": 0.8},
        {"epoch": 1, "loss": 2.0, "val_spearman": 0.3, "val_r_l2": 4.0, "val_spread_ratio": 0.004},
    ], columns)
    results = run_folder.finished_results(paths)
    assert results["best"] == {"epoch": 1, "spearman": 0.5, "r_l2": 2.0, "spread_ratio": 0.8}
    assert results["last"] == {"epoch": 2, "spearman": 0.3, "r_l2": 4.0, "spread_ratio": 0.004}


def _ends_with(monkeypatch, capsys, ratio):
    from tpt_keras.experiment import training

    last = {"epoch": 30, "spearman": 0.257, "r_l2": 9.0, "spread_ratio": ratio}
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: {
        "best": last, "last": last, "epochs": 30, "skipped": []})
    launch._train_one(None, {}, str("runs/x"), None, {}, strategy=None, skip_bad=False, verbose=0,
                      jit_compile=False, end_to_end=False)
    return capsys.readouterr().out


def test_train_run_warns_on_a_collapsed_model(monkeypatch, capsys):
    # every video scored ≈ 81.46: std of the predictions 0.02 against 11.2 for the targets
    ratio = float(np.std([81.44, 81.46, 81.48]) / np.std([62.0, 70.0, 89.0]))
    out = _ends_with(monkeypatch, capsys, ratio)
    assert ("warning: the last model's predictions have collapsed: their spread is 0.001 of the "
            "validation targets' (below 0.1)") in out


def test_no_warning_for_a_model_that_spreads(monkeypatch, capsys):
    assert "collapsed" not in _ends_with(monkeypatch, capsys, 0.1)  # the threshold itself: kept
    assert "collapsed" not in _ends_with(monkeypatch, capsys, None)  # a log without the column
