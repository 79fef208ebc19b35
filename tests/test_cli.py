"""`tpt` hygiene: help lines, start-up without TensorFlow, no CUDA/absl noise, one-line errors."""

import argparse
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
    result = _run("evaluate", str(tmp_path / "nowhere"))
    assert _heavy(result)["status"] == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("tpt evaluate: error: ") and "nowhere" in lines[0], result.stderr
    assert not any(word in result.stderr for word in NOISE), result.stderr


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
