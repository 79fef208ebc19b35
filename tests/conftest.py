"""Shared test fixtures: where the real annotation files live, quiet TensorFlow, seeds."""

import functools
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import tpt_keras` sets it, whatever imports first

import pytest  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # The workers share the machine's cores: each one's TensorFlow gets its share of them inside
    # an op, so that two workers do not oversubscribe two cores. The subprocesses the tests start
    # are not affected: they keep TensorFlow's defaults, as a user's process does, unless a test
    # says otherwise (test_distribute's scenarios).
    import tensorflow as tf  # noqa: E402

    tf.config.threading.set_intra_op_parallelism_threads(
        max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# Session fixtures of one trained run (the run, its export): built once per process, so the files
# that use any of them go to the same worker.
SHARED_RUN_FIXTURES = ("tiny_video_run", "tiny_video_export")

# The files with the most work (a minute or more of CPU each: subprocess scenarios, trained runs,
# exports), handed out first so that the two workers finish together; every other file follows
# in collection order. Only the suite's wall time depends on this list.
LONGEST_FIRST = ("tests/test_distribute.py", "tests/test_experiment.py", "tests/test_run_folder.py",
                 "tests/test_serving.py", "tests/test_reproduce.py", "tests/test_seeds.py",
                 "tests/test_finediving_cli.py", "tests/test_benchmarks.py")


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under pytest-xdist: its file, or for the files that
    use the shared trained run (``SHARED_RUN_FIXTURES``) one unit, so one worker takes them all
    and trains and exports the run once. Read from the file's text: the controller that
    schedules has no collected items, only node ids."""
    return _file_unit(nodeid.split("::", 1)[0])


@functools.lru_cache(maxsize=None)
def _file_unit(path: str) -> str:
    try:
        text = (REPO / path).read_text(encoding="utf-8")
    except OSError:
        return path
    return "shared run" if any(name in text for name in SHARED_RUN_FIXTURES) else path


def pytest_collection_modifyitems(config, items):
    """The files of :data:`LONGEST_FIRST` first (in its order), then the rest as collected."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown where it is not loaded
def pytest_xdist_make_scheduler(config, log):
    """``make test``'s scheduler (``-n 2``): a worker takes a whole unit of work
    (:func:`work_unit`), so module and session fixtures are built once, in the order the tests
    were collected (longest first). pytest-xdist's own ``--dist loadgroup`` cannot be used: it
    groups by renaming node ids, which pytest 9 ignores."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the collection order: longest first
    return ByWorkUnit(config, log)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """``../shared/data`` beside the checkout (real MTL-AQA, AQA-7, JIGSAWS files, a diving GIF)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} not present: the tests read the real annotation files from "
                    "../shared/data beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_video_run(tmp_path_factory):
    """A finished features-mode run on rendered synthetic videos with real Kinetics I3D
    features (32×32 frames, 14 train / 6 test videos, 2 epochs): what `make demo` does, tiny."""
    from data_pipelines.synthetic import videos as synthetic_videos
    from tpt_keras.tools import demo
    from tpt_keras import experiment

    root = tmp_path_factory.mktemp("tiny_video_run")
    manifest = synthetic_videos.write_synthetic_video_dataset(
        str(root / "videos"), num_train=14, num_test=6, size=32, seed=3, progress=False)
    config = demo.video_config(2, frame_size=32, hidden_dim=32,
                               ffn_dim=32, head_hidden_dim=16, batch_size=7)
    splits = experiment.load_splits(config, manifest)
    cache = str(root / "features")
    experiment.extract_features(config, splits["train"] + splits["test"], cache, batch_size=4,
                                progress=False)
    run_dir = str(root / "run")
    experiment.train(config, splits, run_dir, features_dir=cache, verbose=0)
    return {"run": run_dir, "manifest": manifest, "features": cache, "splits": splits,
            "config": config, "root": root}


@pytest.fixture(scope="session")
def tiny_video_export(tiny_video_run, tmp_path_factory) -> str:
    """``tiny_video_run`` exported as `tpt export RUN --name tiny --version 3` writes it: the
    SavedModel folder ``BASE/tiny/3``."""
    from tpt_keras.cli import main as cli

    base = tmp_path_factory.mktemp("saved_models")
    assert cli.main(["export", tiny_video_run["run"], "--name", "tiny", "--version", "3",
                     "--base-dir", str(base)]) == 0
    return str(base / "tiny" / "3")


@pytest.fixture(scope="session")
def tiny_synthetic_run(tmp_path_factory):
    """A finished features-mode run on tiny synthetic features (width 16, batch 16, 48 train /
    16 test videos, 2 epochs of 3 steps). Shared by the whole session: copy the folder before
    changing it."""
    from tpt_keras import experiment
    from tpt_keras.config import get_preset

    root = tmp_path_factory.mktemp("tiny_synthetic_run")
    config = get_preset("synthetic", epochs=2, feature_dim=16, hidden_dim=16, ffn_dim=16,
                        head_hidden_dim=16, batch_size=16)
    cache = str(root / "cache")
    splits = experiment.synthetic_splits(config, cache, num_train=48, num_test=16)
    run = str(root / "run")
    results = experiment.train(config, splits, run, features_dir=cache, verbose=0)
    return {"config": config, "splits": splits, "cache": cache, "run": run, "results": results}
