"""Every preset's video protocol against the documented table (docs/pipelines.md, "Protocols"),
written here again as data, by hand — not read from the code.

For a 400-frame and a 40-frame video: the exact frames of the query and the exemplar at test
time, every possible training window start, the resize, the crop and its centre, flip allowed or
not. The frame rules below are the documented formulas in plain integer arithmetic:

* window of n frames from start s: ``s, s+1, …, s+n-1``; moved left to ``T-n`` if it runs past the
  end; a video shorter than n frames is resampled by the linspace rule;
* linspace: ``floor(i * (T-1) / (n-1))`` for i = 0..n-1 (= ``floor(linspace(0, T-1, n))``).
"""

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.video import protocol as protocol_lib
from data_pipelines.video import video_ops
from tpt_keras.config import PRESETS, TPTConfig, get_preset

_MTL = dict(sampling="window", frames=103, train_starts=set(range(0, 7)), query_start=0,
            exemplar_start=3, clips=(20, 8, 5), resize=(455, 256), crop=224, flip=True,
            random_crop=True, normalization="imagenet")
TABLE = {
    # name: sampling, frames per video, training window starts, test starts, clips (count, length,
    # stride), resize (height, width) actually applied, crop, training flip / random crop.
    "mtl_aqa_dd": _MTL,
    "mtl_aqa_nodd": _MTL,
    "aqa7": dict(sampling="window", frames=103, train_starts={0}, query_start=0, exemplar_start=0,
                 clips=(20, 8, 5), resize=(455, 256), crop=224, flip=True, random_crop=True,
                 normalization="imagenet"),
    "jigsaws": dict(sampling="linspace", frames=160, train_starts=None, query_start=None,
                    exemplar_start=None, clips=(20, 8, 8), resize=(256, 341), crop=224, flip=False,
                    random_crop=False, normalization="imagenet"),
    "custom": dict(sampling="linspace", frames=103, train_starts=None, query_start=None,
                   exemplar_start=None, clips=(20, 8, 5), resize=(256, 455), crop=224, flip=True,
                   random_crop=True, normalization="imagenet"),
    "finediving": dict(sampling="linspace", frames=103, train_starts=None, query_start=None,
                       exemplar_start=None, clips=(20, 8, 5), resize=(256, 455), crop=224, flip=True,
                       random_crop=True, normalization="imagenet"),
    "synthetic": dict(sampling="linspace", frames=103, train_starts=None, query_start=None,
                      exemplar_start=None, clips=(20, 8, 5), resize=(256, 455), crop=224, flip=True,
                      random_crop=True, normalization="imagenet"),
    "synthetic_finediving": dict(sampling="linspace", frames=103, train_starts=None, query_start=None,
                                 exemplar_start=None, clips=(20, 8, 5), resize=(256, 455), crop=224,
                                 flip=True, random_crop=True, normalization="imagenet"),
}
# torchvision CenterCrop's corner, round((size - crop) / 2) per axis, worked out by hand.
CENTRE = {(455, 256): (116, 16), (256, 341): (16, 58), (256, 455): (16, 116)}


def linspace_rule(num_frames, n):
    return [i * (num_frames - 1) // (n - 1) for i in range(n)]


def window_rule(num_frames, start, n):
    if num_frames < n:
        return linspace_rule(num_frames, n)
    start = min(start, num_frames - n)
    return list(range(start, start + n))


def expected_frames(row, num_frames, start):
    if row["sampling"] == "linspace":
        return linspace_rule(num_frames, row["frames"])
    return window_rule(num_frames, start, row["frames"])


def test_the_table_covers_every_preset():
    assert set(TABLE) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("num_frames", [400, 40])
def test_test_time_frames_of_query_and_exemplar(name, num_frames):
    row, protocol = TABLE[name], get_preset(name).protocol
    for role, start in (("query", row["query_start"]), ("exemplar", row["exemplar_start"])):
        got = protocol_lib.sample_frames(num_frames, protocol, role, training=False)
        assert got.tolist() == expected_frames(row, num_frames, start), (name, role)


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("num_frames", [400, 40])
def test_training_frames_over_many_seeds(name, num_frames):
    row, protocol = TABLE[name], get_preset(name).protocol
    for role in ("query", "exemplar"):
        draws = {tuple(protocol_lib.sample_frames(num_frames, protocol, role, True, seed).tolist())
                 for seed in range(200)}
        if row["sampling"] == "window" and num_frames >= row["frames"]:
            expected = {tuple(window_rule(num_frames, s, row["frames"])) for s in row["train_starts"]}
        else:  # linspace, or a video shorter than the window: one possible set of frames
            expected = {tuple(linspace_rule(num_frames, row["frames"]))}
        assert draws == expected, (name, role)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_clip_layout_resize_crop_and_normalisation(name):
    row, protocol = TABLE[name], get_preset(name).protocol
    assert (protocol.num_clips, protocol.clip_len, protocol.clip_stride) == row["clips"]
    assert protocol.num_frames == row["frames"]
    assert protocol.resized_hw == row["resize"] and protocol.crop_size == row["crop"]
    assert protocol.normalization == row["normalization"]
    centre = video_ops.crop_offset(protocol.resized_hw, protocol.crop_size, training=False)
    assert tuple(centre.numpy()) == CENTRE[row["resize"]]


def _coordinate_frames(num_frames, height, width):
    """Pixel (y, x) holds x % 251, y % 251 and 10·(x // 251) + y // 251: its position is readable."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x % 251, y % 251, 10 * (x // 251) + y // 251], -1).astype(np.uint8)
    return np.broadcast_to(image, (num_frames, height, width, 3))


def _corner_and_flip(clips):
    """(y, x) of the crop's top-left corner in the resized frame, and whether it is mirrored."""
    first = clips[0, 0].astype(int)  # (crop, crop, 3) of the first frame

    def position(pixel):
        return (pixel[1] + 251 * (pixel[2] % 10), pixel[0] + 251 * (pixel[2] // 10))

    (y0, x_left), (_, x_right) = position(first[0, 0]), position(first[0, -1])
    flipped = x_left > x_right
    return (y0, min(x_left, x_right)), flipped


@pytest.mark.parametrize("name", sorted(TABLE))
def test_spatial_transform_in_training_and_at_test(name):
    """Frames already at the resize size: the clips show the crop corner and the mirroring."""
    row, protocol = TABLE[name], get_preset(name).protocol
    height, width = row["resize"]
    frames = tf.constant(_coordinate_frames(row["frames"], height, width))
    centre = CENTRE[row["resize"]]
    test = video_ops.frames_to_clips(frames, protocol, training=False, uint8=True).numpy()
    assert _corner_and_flip(test) == (centre, False)
    corners, flips = set(), set()
    for seed in range(16):
        clips = video_ops.frames_to_clips(frames, protocol, training=True, seed=[seed, 5], uint8=True)
        corner, flipped = _corner_and_flip(clips.numpy())
        assert 0 <= corner[0] <= height - row["crop"] and 0 <= corner[1] <= width - row["crop"]
        corners.add(corner)
        flips.add(flipped)
    assert flips == ({False, True} if row["flip"] else {False}), name
    assert (len(corners) > 8) if row["random_crop"] else (corners == {centre}), name


# ------------------------------------------------------------------ whole-video sampling, JIGSAWS frames
def test_custom_samples_the_whole_video_not_the_first_103_frames():
    """A 400-frame video whose action is at frames 150..249: the custom protocol reaches it."""
    protocol = get_preset("custom").protocol
    for training, seed in ((False, None), (True, 1), (True, 2)):
        for role in ("query", "exemplar"):
            frames = protocol_lib.sample_frames(400, protocol, role, training, seed)
            assert frames[0] == 0 and frames[-1] == 399
            assert np.sum((frames >= 150) & (frames <= 249)) >= 25  # a quarter of 103 frames


def test_jigsaws_is_256_by_341_centre_crop_never_flipped():
    """JIGSAWS frames: not the MTL-AQA swapped 455×256 resize with random flips."""
    protocol = get_preset("jigsaws").protocol
    assert protocol.resized_hw == (256, 341)
    frames = tf.constant(_coordinate_frames(160, 256, 341))
    for seed in range(24):
        clips = video_ops.frames_to_clips(frames, protocol, training=True, seed=[seed, 3], uint8=True)
        assert _corner_and_flip(clips.numpy()) == ((16, 58), False)


# ------------------------------------------------------------------ the config object
def test_protocol_is_one_nested_field_with_dotted_overrides(tmp_path):
    config = get_preset("custom", **{"protocol.flip": False, "epochs": 3})
    assert config.protocol.flip is False and config.epochs == 3
    config.save(tmp_path / "config.json")
    import json

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["protocol"]["sampling"] == "linspace" and saved["protocol"]["flip"] is False
    assert "flip" not in saved and "frame_sampling" not in saved
    assert TPTConfig.load(tmp_path / "config.json") == config
    with pytest.raises(ValueError, match=r"'flip' \(did you mean 'protocol.flip'\?\)"):
        get_preset("custom", flip=False)
    with pytest.raises(ValueError, match=r"'flp' \(did you mean 'flip'\?\)"):
        get_preset("custom", **{"protocol.flp": False})


def test_cli_set_overrides_a_protocol_field():
    from tpt_keras.cli import main as cli

    parser = cli.build_parser()
    args = parser.parse_args(["train", "custom", "--manifest", "m.csv", "--output", "o", "--set",
                              "protocol.flip=false",
                              "--set", "protocol.sampling=window", "--set", "protocol.train_start=4"])
    config = cli.resolve_config(args)
    assert (config.protocol.flip, config.protocol.sampling, config.protocol.train_start) == (
        False, "window", 4)


def test_importing_the_config_loads_neither_tensorflow_nor_a_dataset_adapter():
    import subprocess
    import sys

    # the registry (plain Python) may load; no adapter module, no TensorFlow, no synthetic data
    code = ("import sys, tpt_keras.config; "
            "print(sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith("
            "('data_pipelines.datasets.', 'data_pipelines.synthetic', 'data_pipelines.io'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['data_pipelines.datasets.registry']"


# ------------------------------------------------------------------ the exported signature
@pytest.mark.slow
def test_exported_clip_frames_span_a_400_frame_custom_video(tmp_path):
    """The SavedModel samples like the run's protocol: for a ``custom`` run, the middle frame of
    each clip is spread over the whole 400-frame video (not packed into its first 103 frames)."""
    import keras

    from tpt_keras.serving import export
    from tpt_keras.models.tpt_model import TPTModel

    config = get_preset("custom", backbone="none", feature_dim=3, hidden_dim=8, ffn_dim=8,
                        num_heads=2, head_hidden_dim=8, num_queries=2, num_layers=1,
                        num_intervals=4, **{"protocol.resize_height": 16, "protocol.resize_width": 16,
                                            "protocol.crop_size": 16})
    intervals = np.array([[-100.0, -50.0], [-50.0, 0.0], [0.0, 50.0], [50.0, 100.0]])
    model = TPTModel(config, intervals)
    model.encode(np.zeros((1, 20, 3), np.float32))
    backbone = keras.Sequential([keras.Input((8, 16, 16, 3)), keras.layers.GlobalAveragePooling3D()])
    parts = np.random.default_rng(0).normal(size=(1, 2, 2, 8)).astype(np.float32)
    serving = export.Serving(model, backbone, parts, np.array([[40.0, 60.0]]), np.ones((1, 2)),
                             np.ones(1), config.protocol)
    path = export.export_serving(serving, str(tmp_path / "saved"))
    frames = np.random.default_rng(1).integers(0, 255, (400, 16, 16, 3)).astype(np.uint8)
    loaded = tf.saved_model.load(path).signatures["serving_default"]
    clip_frames = loaded(frames=tf.constant(frames))["clip_frames"].numpy()
    middles = [5 * clip + 4 for clip in range(20)]  # 20 clips of 8, stride 5: middle of each
    assert clip_frames.tolist() == [m * 399 // 102 for m in middles]  # linspace over 0..399
    assert clip_frames[0] < 20 and clip_frames[-1] > 380
