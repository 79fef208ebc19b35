"""Shared test fixtures: where the real annotation files live, quiet TensorFlow, seeds."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import tpt_keras` sets it, whatever imports first

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


SHARED_RUN_FIXTURES = ("tiny_video_run",)  # session fixtures that train: built once per process


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2 --dist loadgroup``, as ``make test`` runs) one worker takes a
    whole test file, so module fixtures are built once; the files that share a trained session
    fixture (``SHARED_RUN_FIXTURES``) go to the same worker, so it is trained once too."""
    def file_of(item):
        return item.nodeid.split("::", 1)[0]

    sharing = {file_of(item): name for item in items for name in SHARED_RUN_FIXTURES
               if name in getattr(item, "fixturenames", ())}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(sharing.get(file_of(item), file_of(item))))


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
