"""Features computed elsewhere: a feature cache written with FeatureCache and no video protocol
trains `tpt train custom --features` as "precomputed features" (no frame backbone, the cache's own
feature size and clip count)."""

import json

import numpy as np

from data_pipelines.io.feature_cache import FeatureCache
from tpt_keras import experiment
from tpt_keras.cli import main as cli
from tpt_keras.config import get_preset

SIZES = ["--set", "hidden_dim=16", "--set", "ffn_dim=16", "--set", "num_heads=2",
         "--set", "head_hidden_dim=16", "--set", "num_queries=2", "--set", "num_layers=1",
         "--set", "batch_size=4", "--set", "num_exemplars=3", "--set", "dropout=0.0"]


def _precomputed(tmp_path, feature_dim=48, num_clips=10):
    """A manifest of 8 training and 4 test videos (paths that need not exist) and a cache of
    their (num_clips, feature_dim) features, written as the docs show."""
    rows = [(f"videos/v{i:02d}.mp4", 10.0 + 5 * i, "train" if i < 8 else "test") for i in range(12)]
    manifest = tmp_path / "my_videos.csv"
    manifest.write_text("path,score,split\n" + "".join(f"{p},{s},{split}\n" for p, s, split in rows))
    cache = FeatureCache(str(tmp_path / "my_features"), feature_dim=feature_dim, num_clips=num_clips,
                         backbone="my_extractor", create=True)
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(feature_dim)
    for path, score, _ in rows:  # key = the manifest's path column
        cache.write(path, score / 50 * direction + 0.1 * rng.standard_normal((num_clips, feature_dim)))
    return str(manifest), cache.directory


def test_the_source_of_a_cache(tmp_path):
    _, cache = _precomputed(tmp_path)
    assert experiment.features_source(cache) == "precomputed"
    extracted = FeatureCache(str(tmp_path / "i3d"), feature_dim=1024, num_clips=20,
                             backbone=experiment.BACKBONE_NAME,
                             extra={"protocol": get_preset("custom").protocol.to_dict()}, create=True)
    assert experiment.features_source(extracted.directory) == "i3d"
    assert experiment.features_source(None) is None


def test_config_for_precomputed_features(tmp_path):
    _, cache = _precomputed(tmp_path, feature_dim=768, num_clips=12)
    config, notice = experiment.config_for_features(get_preset("custom"), cache)
    assert (config.backbone, config.feature_dim, config.num_clips) == ("none", 768, 12)
    assert config.protocol.replace(num_clips=20) == get_preset("custom").protocol  # nothing else
    assert notice == (f"{cache}: precomputed features (12 clips × 768, made by my_extractor; no video "
                      "protocol recorded): the model trains on them with no frame backbone "
                      "(backbone=none), so it scores features, not videos")
    # an explicit backbone=none keeps its own settings (a mismatch is then named when the cache opens)
    explicit = get_preset("custom", backbone="none")
    assert experiment.config_for_features(explicit, cache) == (explicit, None)
    assert experiment.config_for_features(get_preset("custom"), None) == (get_preset("custom"), None)


def test_train_custom_on_precomputed_features(tmp_path, capsys):
    manifest, cache = _precomputed(tmp_path)
    run = tmp_path / "run"
    status = cli.main(["train", "custom", "--manifest", manifest, "--features", cache,
                       "--output", str(run), "--epochs", "1", "--verbose", "0", *SIZES])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.splitlines()[0] == (
        f"{cache}: precomputed features (10 clips × 48, made by my_extractor; no video protocol "
        "recorded): the model trains on them with no frame backbone (backbone=none), so it scores "
        "features, not videos")
    saved = json.loads((run / "config.json").read_text())
    assert (saved["backbone"], saved["feature_dim"], saved["protocol"]["num_clips"]) == ("none", 48, 10)
    data = json.loads((run / "data.json").read_text())
    assert experiment.features_source(data["features"]) == "precomputed"
    assert "validation Spearman: best" in captured.out  # 4 test videos scored
