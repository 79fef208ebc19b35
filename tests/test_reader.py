"""Feature cache, extraction, and the tf.data readers (feature and video), end to end."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.io import decode, feature_cache as features
from data_pipelines.tfdata import reader
from data_pipelines.video import protocol as protocol_lib
from data_pipelines.video import video_ops
from data_pipelines.io.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    MissingFeaturesError,
    extract_to_cache,
)
from data_pipelines.samples import Sample

MEAN, STD = np.array(video_ops.IMAGENET_MEAN), np.array(video_ops.IMAGENET_STD)


# --------------------------------------------------------------------------------------------- cache
def test_feature_cache_round_trip(tmp_path):
    cache = FeatureCache(str(tmp_path / "c"), backbone="i3d_k400_mixed5c", create=True)
    feature = np.random.default_rng(0).normal(size=(20, 1024))
    cache.write("01_12", feature)
    cache.write("frames/a b", feature * 2)  # any key is a safe file name
    assert cache.has("01_12") and "frames/a b" in cache and not cache.has("02_01")
    assert cache.keys() == ["01_12", "frames/a b"] and len(cache) == 2
    out = cache.read("01_12")
    assert out.dtype == np.float32 and out.shape == (20, 1024)
    np.testing.assert_allclose(out, feature.astype(np.float32))
    stacked = cache.read_many(["frames/a b", "01_12"])
    assert stacked.shape == (2, 20, 1024)
    np.testing.assert_allclose(stacked[0], 2 * out)
    metadata = json.loads((tmp_path / "c" / "metadata.json").read_text())
    assert metadata["feature_dim"] == 1024 and metadata["num_clips"] == 20
    assert metadata["backbone"] == "i3d_k400_mixed5c" and metadata["dtype"] == "float32"
    assert not [name for name in os.listdir(tmp_path / "c") if name.startswith(".tmp")]  # atomic writes
    assert FeatureCache(str(tmp_path / "c"), backbone=None).keys() == cache.keys()  # reopen


def test_feature_cache_errors(tmp_path):
    cache = FeatureCache(str(tmp_path / "c"), backbone="a", create=True)
    with pytest.raises(ValueError, match="shape \\(20, 512\\), cache expects \\(20, 1024\\)"):
        cache.write("x", np.zeros((20, 512)))
    with pytest.raises(ValueError, match="NaN"):
        cache.write("x", np.full((20, 1024), np.nan))
    with pytest.raises(MissingFeaturesError, match=r"c: 1 of 1 sample\(s\) have no cached features \(first: 'x'\)"):
        cache.read("x")
    cache.write("z", np.zeros((20, 1024)))
    with pytest.raises(KeyError, match=r"c: 2 of 3 sample\(s\) have no cached features \(first: 'x', 'y'\)"):
        cache.read_many(["x", "z", "y"])
    assert cache.missing(["x", "z", "y"]) == ["x", "y"]
    with pytest.raises(FeatureCacheError, match=r"c: a feature cache made with other settings — backbone: cache 'a' "
                                                r"vs asked 'b'"):
        FeatureCache(str(tmp_path / "c"), backbone="b")
    # a cache of 512-d features opened for a 1024-d model names the folder and both sizes
    FeatureCache(str(tmp_path / "small"), feature_dim=512, create=True)
    with pytest.raises(FeatureCacheError, match=r"small: feature cache made with other settings — "
                                                r"feature_dim: cache 512 vs asked 1024"):
        FeatureCache(str(tmp_path / "small"), feature_dim=1024)


def test_reader_never_creates_a_cache(tmp_path):
    misspelt = tmp_path / "featurse"
    with pytest.raises(FeatureCacheError, match=r"featurse: not a feature cache \(folder does not exist\)"):
        FeatureCache(str(misspelt), feature_dim=None, num_clips=None)
    assert not misspelt.exists()  # the old reader created the folder and a metadata.json
    os.makedirs(misspelt)
    with pytest.raises(FeatureCacheError, match=r"featurse: not a feature cache \(folder has no metadata.json\)"):
        FeatureCache(str(misspelt))
    assert os.listdir(misspelt) == []


def test_cache_deleted_after_opening_names_the_folder(tmp_path):
    import shutil

    cache = FeatureCache(str(tmp_path / "c"), create=True)
    cache.write("a", np.zeros((20, 1024)))
    shutil.rmtree(tmp_path / "c")
    with pytest.raises(MissingFeaturesError, match=r"c: 1 of 1 sample\(s\) have no cached features \(first: 'a'\)"):
        cache.read_many(["a"])


def test_cache_refuses_other_video_settings_naming_the_fields(tmp_path):
    extraction = {"video_options": {"protocol": "mtl_aqa", "resize": [455, 256], "flip": True}}
    cache = FeatureCache(str(tmp_path / "c"), extra=extraction, create=True)
    cache.write("a", np.zeros((20, 1024)))
    other = {"video_options": {"protocol": "mtl_aqa", "resize": [256, 341], "flip": False}}
    for create in (True, False):  # extracting again, or training on it, with other settings
        with pytest.raises(FeatureCacheError, match=r"c: feature cache made with other settings — "
                                                    r"video_options.flip: cache True vs asked False; "
                                                    r"video_options.resize: cache \[455, 256\] vs asked \[256, 341\]"):
            FeatureCache(str(tmp_path / "c"), extra=other, create=create)
    same = {"video_options": {"protocol": "mtl_aqa", "resize": (455, 256), "flip": True}}  # a tuple is a list
    assert FeatureCache(str(tmp_path / "c"), extra=same, create=True).keys() == ["a"]  # resumes
    with pytest.raises(FeatureCacheError, match=r"protocol.clip_len: not recorded in the cache, asked 8"):
        FeatureCache(str(tmp_path / "c"), extra={"protocol": {"clip_len": 8}})


def test_disk_full_while_writing_leaves_a_consistent_cache_that_resumes(tmp_path, monkeypatch):
    import errno

    cache = FeatureCache(str(tmp_path / "c"), create=True)
    cache.write("a", np.ones((20, 1024)))
    real_fdopen = os.fdopen

    class FullDisk:
        """A file that takes the first 992 bytes, then raises ENOSPC (as a full disk does)."""

        def __init__(self, handle):
            self.stream, self.written = real_fdopen(handle, "wb"), 0

        def write(self, data):
            if self.written + len(data) > 992:
                self.stream.write(data[:992 - self.written])
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.stream.write(data)

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

    monkeypatch.setattr(os, "fdopen", lambda handle, mode="r", *a, **k: FullDisk(handle))
    with pytest.raises(FeatureCacheError, match=r"c: could not write features of 'b' \(disk full\); the cache "
                                                r"keeps every entry written before"):
        cache.write("b", np.full((20, 1024), 2.0))
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert sorted(os.listdir(tmp_path / "c")) == ["a.npy", "metadata.json"]  # no half file, no temporary
    report = extract_to_cache([Sample(key="a", path="/a", score=1.0), Sample(key="b", path="/b", score=2.0)],
                              FeatureCache(str(tmp_path / "c")), lambda batch: np.full((1, 20, 1024), 2.0),
                              lambda sample: np.zeros((20, 8, 2, 2, 3)), progress=False)
    assert (report.written, report.skipped_existing) == (["b"], ["a"])
    np.testing.assert_array_equal(FeatureCache(str(tmp_path / "c")).read_many(["a", "b"])[:, 0, 0], [1.0, 2.0])


def _fake_clips_fn(sample):
    if "bad" in sample.path:
        raise decode.VideoDecodeError(sample.path, "corrupt or unreadable video")
    return np.full((20, 8, 4, 4, 3), float(sample.score), np.float32)


def test_extract_to_cache_resumes_and_skips_bad(tmp_path, caplog):
    samples = [Sample(key=f"k{i}", path=f"/v/{i}", score=float(i)) for i in range(5)]
    samples.append(Sample(key="broken", path="/v/bad.mp4", score=9.0))
    calls = []

    def extract_fn(batch):
        calls.append(batch.shape)
        return np.repeat(batch.mean(axis=(2, 3, 4, 5))[:, :, None], 1024, axis=2)  # (B, 20, 1024)

    cache = FeatureCache(str(tmp_path / "c"), create=True)
    with pytest.raises(decode.VideoDecodeError, match="bad.mp4"):
        extract_to_cache(samples, cache, extract_fn, _fake_clips_fn, progress=False, batch_size=2)
    assert cache.keys() == ["k0", "k1", "k2", "k3"]  # the batch before the failure was written
    with caplog.at_level(logging.WARNING):
        report = extract_to_cache(samples, cache, extract_fn, _fake_clips_fn, skip_bad=True, progress=False,
                                  batch_size=2)
    assert report.written == ["k4"] and report.skipped_existing == ["k0", "k1", "k2", "k3"]
    assert report.failed[0][0] == "broken" and "bad.mp4" in report.failed[0][1] and "bad.mp4" in caplog.text
    np.testing.assert_allclose(cache.read("k3"), 3.0)
    assert calls == [(2, 20, 8, 4, 4, 3), (2, 20, 8, 4, 4, 3), (1, 20, 8, 4, 4, 3)]
    with pytest.raises(ValueError, match="extract_fn returned shape"):
        extract_to_cache([Sample(key="n", path="/v/n", score=1.0)], cache, lambda b: np.zeros((1, 20, 3)),
                         _fake_clips_fn, progress=False)


# --------------------------------------------------------------------------------------------- feature readers
def _feature_setup(tmp_path, count=12):
    """Features of sample i are the constant i; groups a (0–7) and b (8–11); difficulty 2 or 4."""
    cache = FeatureCache(str(tmp_path / "features"), create=True)
    samples = []
    for i in range(count):
        samples.append(Sample(key=f"s{i:02d}", path=f"/x/{i}", score=10.0 + i, difficulty=2.0 if i % 2 else 4.0,
                              group="a" if i < 8 else "b"))
        cache.write(samples[-1].key, np.full((20, 1024), i, np.float32))
    return cache, samples


def _ids(features):
    return features[..., 0, 0].astype(int)


def test_feature_pair_dataset(tmp_path):
    cache, samples = _feature_setup(tmp_path)
    dataset = reader.feature_pair_dataset(cache, samples, batch_size=4, use_difficulty=True, seed=5, epochs=2)
    spec = dataset.element_spec
    assert spec["query"].shape.as_list() == [4, 20, 1024] and spec["query"].dtype == tf.float32
    assert spec["query_score"].shape.as_list() == [4]
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 6 == 2 * reader.steps_per_epoch(12, 4)
    epochs = []
    for start in (0, 3):
        queries, exemplars = [], []
        for batch in batches[start : start + 3]:
            q, e = _ids(batch["query"]), _ids(batch["exemplar"])
            scores = zip(batch["query_score"], batch["exemplar_score"], batch["query_difficulty"])
            for qi, ei, (qs, es, qd) in zip(q, e, scores):
                assert samples[qi].group == samples[ei].group and qi != ei
                assert qs == pytest.approx((10.0 + qi) / samples[qi].difficulty)  # target = score / DD
                assert es == pytest.approx((10.0 + ei) / samples[ei].difficulty)
                assert qd == samples[qi].difficulty
            queries += q.tolist()
            exemplars += e.tolist()
        assert sorted(queries) == list(range(12))  # each epoch: every sample once as query
        epochs.append((queries, exemplars))
    assert epochs[0] != epochs[1]  # new order and exemplars each epoch
    again = list(reader.feature_pair_dataset(cache, samples, 4, True, seed=5, epochs=2).as_numpy_iterator())
    for first, second in zip(batches, again):
        np.testing.assert_array_equal(first["exemplar"], second["exemplar"])
    resumed = list(reader.feature_pair_dataset(cache, samples, 4, True, seed=5, epochs=1, first_epoch=1)
                   .as_numpy_iterator())  # resuming at epoch 1 replays epoch 1 exactly
    for first, second in zip(batches[3:], resumed):
        np.testing.assert_array_equal(first["query"], second["query"])
        np.testing.assert_array_equal(first["exemplar"], second["exemplar"])
    forever = reader.feature_pair_dataset(cache, samples, 5, False, seed=5)  # 12 → 2 batches of 5 per epoch
    scores = [b["query_score"] for b in forever.take(4).as_numpy_iterator()]
    assert all(s.shape == (5,) for s in scores) and set(np.concatenate(scores[:2]) - 10) <= set(range(12))


def test_feature_pair_dataset_sharding(tmp_path):
    cache, samples = _feature_setup(tmp_path)
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        dataset = reader.feature_pair_dataset(cache, samples, batch_size=4, use_difficulty=False, seed=1, epochs=1,
                                              input_context=context)
        batches = list(dataset.as_numpy_iterator())
        assert [b["query"].shape for b in batches] == [(2, 20, 1024)] * 3  # per-replica batch 2
        shards.append(np.concatenate([_ids(b["query"]) for b in batches]).tolist())
    assert sorted(shards[0] + shards[1]) == list(range(12)) and len(shards[0]) == len(shards[1]) == 6


def test_feature_eval_dataset(tmp_path):
    cache, samples = _feature_setup(tmp_path)
    train, test = samples[:10], samples[10:]  # test samples are group b: train has only 8, 9 in b
    test = [Sample(key=s.key, path=s.path, score=s.score, difficulty=s.difficulty, group=g, split="test")
            for s, g in zip(test, ["b", "a"])]
    dataset = reader.feature_eval_dataset(cache, test, train, batch_size=2, use_difficulty=True, num_exemplars=5,
                                          seed=0, with_keys=True)
    (batch,) = list(dataset.as_numpy_iterator())
    assert batch["query"].shape == (2, 20, 1024) and batch["exemplars"].shape == (2, 5, 20, 1024)
    assert batch["exemplar_mask"].dtype == np.float32 and batch["score"].tolist() == [20.0, 21.0]
    np.testing.assert_array_equal(batch["exemplar_mask"], [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    exemplar_ids = _ids(batch["exemplars"])
    assert sorted(exemplar_ids[0, :2].tolist()) == [8, 9]
    np.testing.assert_array_equal(exemplar_ids[0], exemplar_ids[0, np.arange(5) % 2])  # padding repeats
    assert set(exemplar_ids[1].tolist()) <= set(range(8)) and len(set(exemplar_ids[1].tolist())) == 5
    np.testing.assert_allclose(batch["exemplar_scores"], (10.0 + exemplar_ids) / np.array(
        [[train[i].difficulty for i in row] for row in exemplar_ids]))
    np.testing.assert_array_equal(batch["query_difficulty"], [4.0, 2.0])
    assert batch["key"].tolist() == [b"s10", b"s11"]


# --------------------------------------------------------------------------------------------- video readers
def _flat_video(video_id, count=110, height=24, width=32):
    """Frame t: red = 2t + 10, green = 30·video_id + 20, blue = 128 (flat)."""
    frames = np.empty((count, height, width, 3), np.uint8)
    frames[..., 0] = (2 * np.arange(count) + 10).reshape(count, 1, 1)
    frames[..., 1] = 30 * video_id + 20
    frames[..., 2] = 128
    return frames


def _decode_clips(clips):
    """(…, 20, 8, H, W, 3) normalised clips → (video ids (…), frame index (…, 20, 8)) of the centre pixel."""
    centre = clips[..., clips.shape[-3] // 2, clips.shape[-2] // 2, :] * STD + MEAN
    pixels = centre * 255.0
    frame_index = (pixels[..., 0] - 10.0) / 2.0
    video = np.rint((pixels[..., 0, 0, 1] - 20.0) / 30.0).astype(int)
    return video, frame_index


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves files
def video_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    samples = []
    for i in range(6):
        if i < 4:
            path = str(root / f"{i:02d}_01")
            decode.write_frame_folder(path, _flat_video(i), pattern="img_{:05d}.png")
        else:
            path = decode.write_video(str(root / f"video_{i}.mp4"), _flat_video(i))
        samples.append(Sample(key=f"v{i}", path=path, score=50.0 + i, difficulty=2.0, group="a" if i < 3 else "b"))
    bad = root / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    return samples, str(bad)


def _check_window(frame_index, video_id, start_choices, exact):
    starts = frame_index[:, 0] - 5 * np.arange(20)  # every clip of a video shares one window start
    expected = starts[0] + 5 * np.arange(20)[:, None] + np.arange(8)[None, :]
    tolerance = 0.05 if exact else 1.5
    np.testing.assert_allclose(frame_index, expected, atol=tolerance)
    assert round(float(starts[0])) in start_choices, (video_id, starts[0])


def test_video_pair_dataset(video_samples):
    samples, _ = video_samples
    dataset = reader.video_pair_dataset(samples, batch_size=2, use_difficulty=True, protocol="mtl_aqa", seed=3,
                                        epochs=1)
    spec = dataset.element_spec
    assert spec["query"].shape.as_list() == [2, 20, 8, 224, 224, 3] and spec["query"].dtype == tf.float32
    queries = []
    for batch in dataset.as_numpy_iterator():
        assert batch["exemplar"].shape == (2, 20, 8, 224, 224, 3)
        assert batch["query"].min() >= -2.2 and batch["query"].max() <= 2.7
        for role in ("query", "exemplar"):
            ids, frames = _decode_clips(batch[role])
            for row in range(2):
                _check_window(frames[row], ids[row], range(0, 7), exact=ids[row] < 4)
            if role == "query":
                np.testing.assert_allclose(batch["query_score"], (50.0 + ids) / 2.0)
                queries += ids.tolist()
            else:
                np.testing.assert_allclose(batch["exemplar_score"], (50.0 + ids) / 2.0)
                query_ids = _decode_clips(batch["query"])[0]
                assert all(samples[q].group == samples[e].group and q != e for q, e in zip(query_ids, ids))
    assert sorted(queries) == list(range(6))


def test_video_eval_and_clips_datasets(video_samples):
    samples, _ = video_samples
    train, test = samples[:3], [samples[4]]
    test = [Sample(key="t", path=samples[4].path, score=70.0, difficulty=2.0, group="a", split="test")]
    dataset = reader.video_eval_dataset(test, train, batch_size=1, use_difficulty=True, protocol="mtl_aqa",
                                        num_exemplars=4, seed=0, test_exemplar_start=3, with_keys=True)
    (batch,) = list(dataset.as_numpy_iterator())
    assert batch["query"].shape == (1, 20, 8, 224, 224, 3)
    assert batch["exemplars"].shape == (1, 4, 20, 8, 224, 224, 3)
    np.testing.assert_array_equal(batch["exemplar_mask"], [[1, 1, 1, 0]])
    ids, frames = _decode_clips(batch["query"][0])
    _check_window(frames, ids, {0}, exact=False)  # test query: s = 0
    ex_ids, ex_frames = _decode_clips(batch["exemplars"][0])
    assert sorted(ex_ids[:3].tolist()) == [0, 1, 2] and ex_ids[3] == ex_ids[0]
    np.testing.assert_array_equal(batch["exemplars"][0, 3], batch["exemplars"][0, 0])  # padding repeats slot 0
    for slot in range(4):
        _check_window(ex_frames[slot], ex_ids[slot], {3}, exact=True)  # test exemplar: s = 3 (the quirk)
    np.testing.assert_allclose(batch["exemplar_scores"][0], (50.0 + ex_ids) / 2.0)
    assert batch["score"].tolist() == [70.0] and batch["key"].tolist() == [b"t"]

    clips = list(reader.video_clips_dataset(samples[:2], "aqa7").as_numpy_iterator())
    assert [key for key, _ in clips] == [b"v0", b"v1"]
    np.testing.assert_array_equal(clips[0][1], reader.make_clips_fn("aqa7")(samples[0]))
    np.testing.assert_allclose(_decode_clips(clips[1][1])[1], protocol_lib.clip_indices(), atol=0.05)  # frames 0..102


def test_video_reader_bad_video(video_samples, caplog):
    samples, bad = video_samples
    broken = samples[:3] + [Sample(key="bad", path=bad, score=1.0, group="a")]
    clips = reader.video_clips_dataset(broken[2:], "mtl_aqa", uint8=True)
    with pytest.raises(tf.errors.OpError, match=r"bad\.mp4: corrupt or unreadable video"):
        list(clips)
    log = decode.SkipLog()
    with caplog.at_level(logging.WARNING):
        kept = list(reader.video_clips_dataset(broken[2:], "mtl_aqa", uint8=True, skip_bad=True,
                                               skip_log=log).as_numpy_iterator())
    assert [key for key, _ in kept] == [b"v2"] and kept[0][1].dtype == np.uint8
    assert log.count == 1 and "bad.mp4" in caplog.text
    pairs = reader.video_pair_dataset(broken, batch_size=1, use_difficulty=False, protocol="mtl_aqa", seed=0, epochs=1,
                                      uint8=True, skip_bad=True, skip_log=log)
    queries = [round((int(b["query"][0, 0, 0, 112, 112, 1]) - 20) / 30) for b in pairs.as_numpy_iterator()]
    assert 1 <= len(queries) <= 3 and log.count >= 2  # pairs touching bad.mp4 are dropped, never zero-filled


def test_split_by_cache_leaves_out_what_extraction_skipped(tmp_path):
    cache = FeatureCache(str(tmp_path / "c"), create=True)
    samples = [Sample(key=k, path=f"/v/{k}", score=1.0) for k in ("a", "bad", "b", "gone")]
    for key in ("a", "b"):
        cache.write(key, np.zeros((20, 1024)))
    kept, dropped = features.split_by_cache(samples, cache)
    assert [s.key for s in kept] == ["a", "b"] and [s.key for s in dropped] == ["bad", "gone"]


def test_every_pipeline_runs_without_the_autotuner(tmp_path, video_samples):
    """tf.data's autotuner makes deleting an iterator wait for its model thread's next wake-up
    (up to a minute); every reader turns it off and keeps a fixed, deterministic schedule."""
    cache, samples = _feature_setup(tmp_path)
    videos, _ = video_samples
    datasets = {
        "feature pairs": reader.feature_pair_dataset(cache, samples, 4, True, seed=5),
        "feature eval": reader.feature_eval_dataset(cache, samples[:2], samples[2:], 2, True,
                                                    num_exemplars=2, seed=0),
        "video pairs": reader.video_pair_dataset(videos[:4], 2, True, protocol="mtl_aqa", seed=0),
        "video eval": reader.video_eval_dataset(videos[3:4], videos[:3], 1, True, protocol="mtl_aqa",
                                                num_exemplars=2, seed=0, empty_group="all"),
        "video clips": reader.video_clips_dataset(videos[:2], "mtl_aqa"),
    }
    for name, dataset in datasets.items():
        options = dataset.options()
        assert options.autotune.enabled is False, name
        assert options.deterministic is True, name
    assert reader.PARALLEL_CALLS >= 2 and reader.PREFETCH_BATCHES >= 1  # fixed sizes, not AUTOTUNE (-1)
