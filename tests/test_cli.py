"""`tpt` hygiene: help lines, start-up without TensorFlow, no CUDA/absl noise, one-line errors."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from tpt_keras.cli import main as cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ("cudart_stub", "cuInit", "absl::InitializeLog", "cuda_platform", "cpu_feature_guard")

# Runs `tpt ARGS` in process, then reports which heavy modules got imported.
WRAPPER = r"""
import json, sys
from tpt_keras.cli import main as cli
try:
    status = cli.main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
heavy = [m for m in ("tensorflow", "keras", "scipy.io", "matplotlib") if m in sys.modules]
print("HEAVY " + json.dumps({"status": status, "heavy": heavy}))
"""


def _run(*args, env=None):
    environment = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quieten TensorFlow itself
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True,
                          cwd=REPO, env=environment, timeout=600)


def _heavy(result):
    import json

    line = [line for line in result.stdout.splitlines() if line.startswith("HEAVY ")][-1]
    return json.loads(line[len("HEAVY "):])


@pytest.mark.parametrize("args", [
    ["--help"],
    ["data-info", "--dataset", "mtl_aqa", "--annotations", "{shared}/MTL-AQA", "--json"],
])
def test_commands_without_tensorflow_do_not_import_it(args, shared_data):
    result = _run(*[a.format(shared=shared_data) for a in args])
    report = _heavy(result)
    assert report["status"] == 0, result.stderr
    assert report["heavy"] == [], report
    assert not any(word in result.stderr for word in NOISE), result.stderr


def test_every_subcommand_and_option_has_a_help_line():
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helped = {choice.dest for choice in commands._choices_actions if choice.help}
    assert helped == set(commands.choices)
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, sub in commands.choices.items() for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []


@pytest.mark.parametrize("argv, message", [
    (["i3d-check", "--frames", "0"], "--frames: must be at least 1, got 0"),
    (["export", "run", "--version", "-1"], "--version: must be at least 1, got -1"),
])
def test_non_positive_numbers_are_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_a_tensorflow_command_prints_its_error_without_cuda_noise(tmp_path):
    result = _run("evaluate", str(tmp_path))  # a folder, but no run in it: found after TensorFlow
    assert _heavy(result)["status"] == 2 and "tensorflow" in _heavy(result)["heavy"]
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("tpt evaluate: error: ") and str(tmp_path) in lines[0], result.stderr
    assert not any(word in result.stderr for word in NOISE), result.stderr


_TINY = ["--set", "feature_dim=16", "--set", "hidden_dim=16"]


def _refusals(tmp):
    """(argv, the message) of every refusal that needs no tensor; files made in ``tmp``."""
    garbage = tmp / "garbage.json"
    garbage.write_text("{dataset: synthetic")
    finished = tmp / "finished"
    finished.mkdir()
    from tpt_keras.config import get_preset

    (finished / "config.json").write_text(
        json.dumps(get_preset("synthetic", seed=5).to_dict()))
    out = str(tmp / "run")
    train = ["train", "synthetic", "--output", out]
    # an export's folder as `tpt export` writes it: frames, a difficulty and a dive number
    export = tmp / "export"
    export.mkdir()
    (export / "saved_model.pb").write_bytes(b"")
    (export / "tpt_export.json").write_text(json.dumps({
        "inputs": ["difficulty", "frames", "group"], "groups": ["205b", "407c"],
        "difficulty_range": [1.0, 7.0]}))
    video = tmp / "video.gif"
    video.write_bytes(b"GIF89a")
    score = ["score", str(video), "--model", str(export)]
    return [
        (train + ["--manifest", "x.csv"], "--manifest does not apply to the synthetic dataset"),
        (train + ["--annotations", str(tmp)], "--annotations does not apply to the synthetic"),
        (train + ["--class", "diving"], "--class does not apply to the synthetic dataset"),
        (train + ["--set", "hiden_dim=3"], "did you mean 'hidden_dim'"),
        (train + ["--set", "dropout=2"], "--set: TPTConfig.dropout must be in [0, 1)"),
        (train + ["--set", "epochs"], "--set expects KEY=VALUE, got 'epochs'"),
        (train + ["--epochs", "0"], "--epochs must be ≥ 1, got 0"),
        (train + ["--per-replica-batch", "0"], "--per-replica-batch: must be at least 1, got 0"),
        (train + ["--end-to-end"], "--end-to-end fine-tunes I3D on videos; the synthetic preset"),
        (["train", "nonsense", "--output", out], "unknown preset 'nonsense'"),
        (["train", str(garbage), "--output", out], f"{garbage}: not a valid preset JSON file"),
        (["train", "custom", "--manifest", str(tmp / "no.csv"), "--output", out],
         f"--manifest {tmp / 'no.csv'}: no such file"),
        (["train", "custom", "--manifest", str(garbage), "--media-root", str(tmp), "--output", out],
         "--media-root does not apply to the custom dataset, which reads --manifest"),
        (["train", "mtl_aqa_dd", "--output", out], "the mtl_aqa dataset needs --annotations"),
        (["train", "mtl_aqa_dd", "--annotations", str(tmp / "none"), "--output", out],
         f"--annotations {tmp / 'none'}: no such file"),
        (["train", "synthetic", "--output", str(finished)] + _TINY,
         "holds a different configuration (feature_dim: 64 → 16; hidden_dim: 64 → 16; seed: 5 → 0)"),
        (["evaluate", str(tmp / "nowhere")], f"{tmp / 'nowhere'}: no such folder"),
        (["export", str(tmp / "nowhere")], f"{tmp / 'nowhere'}: no such folder"),
        (["score", str(tmp / "no.mp4"), "--model", str(tmp)], f"{tmp / 'no.mp4'}: no such file"),
        (["extract-features", "synthetic", "--manifest", "x.csv", "--cache", str(tmp)],
         "--manifest does not apply to the synthetic dataset"),
        (score, "this model was trained with difficulty degrees: pass --difficulty DD (trained on 2–3.5)"),
        (score + ["--difficulty", "9"], "--difficulty 9 is outside the accepted [1, 7]"),
        (score + ["--difficulty", "3", "--group", "zzz"],
         "--group 'zzz' is not a group of this model's training set: it must be one of 205b, 407c"),
    ]


def test_every_refusal_that_needs_no_tensor_comes_before_tensorflow(tmp_path):
    """Each refusal exits 2 with its message, and TensorFlow was never imported (one fresh
    process per refusal, as a user runs them)."""
    import json as json_

    for argv, message in _refusals(tmp_path):
        result = _run(*argv)
        report = _heavy(result)
        assert report["status"] == 2, (argv, result.stderr)
        assert message in result.stderr, (argv, result.stderr)
        assert "tensorflow" not in report["heavy"], (argv, json_.dumps(report))
    assert not os.path.exists(tmp_path / "run")


def test_a_locked_run_folder_is_refused_before_tensorflow(tmp_path):
    from tpt_keras.runtime import run_folder

    run = tmp_path / "run"
    with run_folder.RunLock(str(run)):  # this process holds it; the command runs in another
        result = _run("train", "synthetic", "--output", str(run))
    report = _heavy(result)
    assert report["status"] == 2 and "tensorflow" not in report["heavy"], result.stderr
    assert f"{run} is in use by process {os.getpid()}" in result.stderr
    assert sorted(os.listdir(run)) == [".lock"]


def test_export_base_dir_that_is_a_file_or_read_only(tmp_path):
    from tpt_keras.serving import export

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="file is a file, not a folder"):
        export._check_writable_folder(str(blocker / "tpt"))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="locked"):
            export._check_writable_folder(str(locked / "tpt"))
