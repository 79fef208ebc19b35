"""Video protocol and ops: temporal sampling, clip windows, one flip/crop per video, resize equality, normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.video import protocol as protocol_lib
from data_pipelines.video import video_ops
from data_pipelines.video.protocol import PROTOCOLS, VideoProtocol, get_protocol

MTL, AQA7, JIGSAWS = PROTOCOLS["mtl_aqa"], PROTOCOLS["aqa7"], PROTOCOLS["jigsaws"]


def test_clip_starts_defaults_and_jigsaws():
    np.testing.assert_array_equal(protocol_lib.clip_starts(), np.arange(0, 100, 5))
    assert protocol_lib.clip_starts().dtype == np.int32
    np.testing.assert_array_equal(protocol_lib.clip_starts(160, 20, 8, 8), np.arange(0, 160, 8))
    indices = protocol_lib.clip_indices()
    assert indices.shape == (20, 8) and indices[0, 0] == 0 and indices[-1, -1] == 102
    assert indices[1, 0] == 5 and indices[0, -1] == 7  # neighbours overlap by 3 frames
    with pytest.raises(ValueError, match="need 104 frames, only 103"):
        protocol_lib.clip_starts(103, 20, 9, 5)


def test_window_clips_content():
    frames = np.arange(103, dtype=np.int32).reshape(103, 1, 1, 1) * np.ones((1, 2, 3, 3), np.int32)
    clips = video_ops.window_clips(frames, protocol_lib.clip_starts(), 8)
    assert clips.shape == (20, 8, 2, 3, 3) and clips.dtype == tf.int32
    expected = 5 * np.arange(20)[:, None] + np.arange(8)[None, :]
    np.testing.assert_array_equal(clips.numpy()[:, :, 0, 0, 0], expected)
    with pytest.raises(ValueError, match="need 103 frames"):
        video_ops.window_clips(frames[:100], protocol_lib.clip_starts(), 8)


def test_linspace_and_window_indices():
    idx = protocol_lib.linspace_indices(300, 160)
    assert idx.shape == (160,) and idx[0] == 0 and idx[-1] == 299 and np.all(np.diff(idx) >= 1)
    np.testing.assert_array_equal(idx, np.floor(np.linspace(0, 299, 160)).astype(int))
    short = protocol_lib.linspace_indices(50, 103)  # shorter video: frames repeat, never padding
    assert short.shape == (103,) and short.max() == 49 and len(np.unique(short)) == 50
    np.testing.assert_array_equal(protocol_lib.window_indices(110, 3, 103), np.arange(3, 106))
    np.testing.assert_array_equal(protocol_lib.window_indices(104, 6, 103), np.arange(1, 104))  # moved left
    np.testing.assert_array_equal(protocol_lib.window_indices(60, 3, 103), protocol_lib.linspace_indices(60, 103))


def test_window_start_rules():
    starts = {protocol_lib.window_start("mtl_aqa", True, seed=seed) for seed in range(300)}
    assert starts == set(range(0, 7))  # 3 + randint(-3, 3), both ends included
    assert protocol_lib.window_start("mtl_aqa", True, seed=5) == protocol_lib.window_start("mtl_aqa", True, seed=5)
    assert protocol_lib.window_start("mtl_aqa", False, "query") == 0
    assert protocol_lib.window_start("mtl_aqa", False, "exemplar") == 3  # the original's quirk
    clean = MTL.replace(test_exemplar_start=0)
    assert protocol_lib.window_start(clean, False, "exemplar") == 0
    assert protocol_lib.window_start("aqa7", True, seed=1) == 0
    with pytest.raises(ValueError, match="role"):
        protocol_lib.window_start("mtl_aqa", False, "teacher")


def test_temporal_indices_per_protocol():
    np.testing.assert_array_equal(protocol_lib.temporal_indices(140, "aqa7"), np.arange(103))  # img_00001..103
    np.testing.assert_array_equal(protocol_lib.temporal_indices(140, "mtl_aqa", start=4), np.arange(4, 107))
    jig = protocol_lib.temporal_indices(1000, "jigsaws")
    assert jig.shape == (160,) and jig[0] == 0 and jig[-1] == 999
    custom = protocol_lib.temporal_indices(96, "custom")
    assert custom.shape == (103,) and custom[-1] == 95
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_lib.temporal_indices(100, "kinetics")


def _reference(frames, resized_hw, offset, crop, flip, antialias):
    frames = frames[:, :, ::-1] if flip else frames
    resized = tf.image.resize(frames, resized_hw, antialias=antialias)
    return resized[:, offset[0] : offset[0] + crop, offset[1] : offset[1] + crop].numpy()


@pytest.mark.parametrize("in_hw", [(256, 455), (180, 320), (300, 500)])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("antialias", [True, False])
def test_resize_crop_equals_resize_then_slice(in_hw, flip, antialias):
    frames = np.random.default_rng(0).uniform(0, 255, (2, *in_hw, 3)).astype(np.float32)
    for resized_hw, offset in (((256, 455), (17, 101)), ((455, 256), (200, 30))):  # intended and swapped
        out = video_ops.resize_crop(frames, resized_hw, offset, 224, flip=flip, antialias=antialias)
        assert out.shape == (2, 224, 224, 3) and out.dtype == tf.float32
        ref = _reference(frames, resized_hw, offset, 224, flip, antialias)
        assert np.abs(out.numpy() - ref).max() < 0.02


def test_resize_crop_uint8_rounds_like_pil():
    frames = np.random.default_rng(1).integers(0, 256, (2, 180, 320, 3)).astype(np.uint8)
    out = video_ops.resize_crop(frames, (256, 455), (5, 9), 224)
    assert out.dtype == tf.uint8
    ref = _reference(frames.astype(np.float32), (256, 455), (5, 9), 224, False, True)
    assert np.abs(out.numpy().astype(float) - ref).max() <= 0.51
    same = np.random.default_rng(2).integers(0, 256, (2, 256, 455, 3)).astype(np.uint8)
    np.testing.assert_array_equal(video_ops.resize_crop(same, (256, 455), (16, 116), 224).numpy(),
                                  same[:, 16:240, 116:340])  # already the resized size: exact crop


def test_crop_offset_centre_and_random():
    np.testing.assert_array_equal(video_ops.crop_offset((256, 455), 224, False).numpy(), [16, 116])
    np.testing.assert_array_equal(video_ops.crop_offset((455, 256), 224, False).numpy(), [116, 16])
    offsets = np.array([video_ops.crop_offset((256, 455), 224, True, seed=[s, 0]).numpy() for s in range(40)])
    assert offsets[:, 0].min() >= 0 and offsets[:, 0].max() <= 32
    assert offsets[:, 1].min() >= 0 and offsets[:, 1].max() <= 231
    assert len({tuple(o) for o in offsets}) > 30
    np.testing.assert_array_equal(video_ops.crop_offset((256, 455), 224, True, seed=[3, 0]).numpy(), offsets[3])


def test_one_flip_and_crop_per_video():
    """Frame t = base + t: after the transform, every frame must differ from frame 0 by exactly t."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 200, (1, 256, 455, 3))
    frames = (base + np.arange(40).reshape(40, 1, 1, 1)).astype(np.uint8)
    flips = []
    for seed in range(12):
        out = video_ops.spatial_transform(frames, True, seed=[seed, 9]).numpy().astype(int)
        assert out.shape == (40, 224, 224, 3)
        np.testing.assert_array_equal(out - out[:1], np.broadcast_to(np.arange(40).reshape(40, 1, 1, 1), out.shape))
        # Recover the geometry of frame 0 and check it is a (possibly mirrored) crop of the base.
        flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(tf.constant([seed, 9]), 2))
        flip = bool(video_ops.flip_decision(flip_seed, True))
        y, x = video_ops.crop_offset((256, 455), 224, True, crop_seed).numpy()
        source = base[0, :, ::-1] if flip else base[0]
        np.testing.assert_array_equal(out[0], source[y : y + 224, x : x + 224])
        flips.append(flip)
    assert any(flips) and not all(flips)
    test = video_ops.spatial_transform(frames, False).numpy()
    np.testing.assert_array_equal(test, frames[:, 16:240, 116:340])  # centre crop, no flip


def test_normalize_known_values():
    pixels = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1) * np.ones((1, 2, 4, 3), np.uint8)
    out = video_ops.normalize(pixels, "imagenet").numpy()
    mean, std = np.array(video_ops.IMAGENET_MEAN), np.array(video_ops.IMAGENET_STD)
    np.testing.assert_allclose(out[0, 0, 0], -mean / std, rtol=1e-6)
    np.testing.assert_allclose(out[1, 1, 3], (1 - mean) / std, rtol=1e-6)
    assert out.dtype == np.float32 and out.shape == (2, 2, 4, 3)
    np.testing.assert_allclose(video_ops.normalize(pixels, "inception").numpy()[:, 1, 2, 2], [-1.0, 1.0])
    with pytest.raises(ValueError):
        video_ops.normalize(pixels, "none")


def test_frames_to_clips_shapes_ranges_and_time():
    # Frame t is flat grey 2t + 10: the clips reveal which frame each position holds.
    frames = (np.arange(103) * 2 + 10).astype(np.uint8).reshape(103, 1, 1, 1) * np.ones((1, 64, 112, 3), np.uint8)
    for options in (MTL.replace(swap_resize=False), MTL):
        clips = video_ops.frames_to_clips(frames, options, training=True, seed=[1, 2])
        assert clips.shape == (20, 8, 224, 224, 3) and clips.dtype == tf.float32
        clips = clips.numpy()
        assert clips.min() >= (0 - 0.485) / 0.229 - 1e-5 and clips.max() <= (1 - 0.406) / 0.225 + 1e-5
        red = clips[:, :, 100, 100, 0] * 0.229 + 0.485  # back to [0, 1]
        np.testing.assert_allclose(red * 255, 2 * protocol_lib.clip_indices() + 10, atol=0.01)
    inception = AQA7.replace(normalization="inception")
    fused = video_ops.frames_to_clips(frames, inception, training=False, xla=True)
    plain = video_ops.frames_to_clips(frames, inception, training=False, xla=False)
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), atol=1e-6)  # XLA fusion changes nothing
    assert fused.numpy().min() >= -1.0 and fused.numpy().max() <= 1.0
    raw = video_ops.frames_to_clips(frames, AQA7, training=False, uint8=True)
    assert raw.dtype == tf.uint8 and int(raw[19, 7, 0, 0, 0]) == 2 * 102 + 10
    # JIGSAWS: centre crop and no flip even in training (as the original JIGSAWS loader does), so no seed is needed.
    ramp = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, None, :, None] * 3, (160, 48, 64, 3))
    jig = video_ops.frames_to_clips(ramp, JIGSAWS, training=True, uint8=True)
    assert jig.shape == (20, 8, 224, 224, 3)
    np.testing.assert_array_equal(jig.numpy(), video_ops.frames_to_clips(
        ramp, JIGSAWS, training=False, uint8=True).numpy())
    assert jig.numpy()[0, 0, 0, 0, 0] < jig.numpy()[0, 0, 0, -1, 0]  # not mirrored


def test_protocol_validation_and_derived_values():
    assert MTL.num_frames == 103 and JIGSAWS.num_frames == 160
    custom = MTL.replace(num_clips=10, clip_stride=8, train_jitter=0, flip=False)
    assert (custom.num_frames, custom.train_start, custom.flip, custom.random_crop) == (80, 3, False, True)
    assert video_ops.clip_dtype() == tf.float32 and video_ops.clip_dtype(uint8=True) == tf.uint8
    assert MTL.replace(swap_resize=False).resized_hw == (256, 455)
    assert MTL.resized_hw == (455, 256)
    assert JIGSAWS.resized_hw == (256, 341)
    assert video_ops.clip_shape(MTL.replace(resize_height=240, resize_width=320, crop_size=200)) == (
        20, 8, 200, 200, 3)
    assert VideoProtocol.from_dict(MTL.to_dict()) == MTL
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("ucf101")
    with pytest.raises(ValueError, match="does not fit"):
        MTL.replace(resize_height=200, resize_width=300)
    with pytest.raises(ValueError, match="normalization"):
        MTL.replace(normalization="zscore")
    with pytest.raises(ValueError, match="sampling"):
        MTL.replace(sampling="random")
    with pytest.raises(ValueError, match="did you mean 'flip'"):
        MTL.replace(flp=False)
    with pytest.raises(ValueError, match="train_jitter"):
        MTL.replace(train_start=1)
    with pytest.raises(ValueError, match="missing"):
        VideoProtocol.from_dict({k: v for k, v in MTL.to_dict().items() if k != "flip"})


@pytest.mark.parametrize("swap", [False, True])
def test_fused_xla_path_equals_plain_ops(swap):
    """Frames already at the resize size take the one-kernel path: same values as the plain ops."""
    height, width = (455, 256) if swap else (256, 455)
    frames = np.random.default_rng(4).integers(0, 256, (18, height, width, 3)).astype(np.uint8)
    protocol = MTL.replace(swap_resize=swap, num_clips=3)  # 3 clips: 18 frames
    flips = {bool(video_ops.spatial_params(True, [seed, 1])[0]) for seed in range(4)}
    assert flips == {False, True}
    for seed in range(4):  # covers flipped and unflipped videos
        fused = video_ops.frames_to_clips(frames, protocol, training=True, seed=[seed, 1], xla=True).numpy()
        plain = video_ops.frames_to_clips(frames, protocol, training=True, seed=[seed, 1], xla=False).numpy()
        np.testing.assert_allclose(fused, plain, atol=1e-5)
        raw = video_ops.frames_to_clips(frames, protocol, training=True, seed=[seed, 1], uint8=True).numpy()
        np.testing.assert_allclose(fused, video_ops.normalize(raw).numpy(), atol=1e-5)


@pytest.mark.parametrize("protocol", ["mtl_aqa", "jigsaws", "custom"])
def test_tf_temporal_indices_equal_the_numpy_rule(protocol):
    """The exported signature samples frames with the TF twin: it must pick the same frames."""
    spec = protocol_lib.get_protocol(protocol)
    for num_frames in (1, 7, spec.num_frames - 1, spec.num_frames, spec.num_frames + 1, 250, 1001):
        for start in (0, 3, 200):
            expected = protocol_lib.temporal_indices(num_frames, spec, start)
            got = video_ops.tf_temporal_indices(tf.constant(num_frames), spec, start).numpy()
            np.testing.assert_array_equal(got, expected, err_msg=f"{protocol} T={num_frames} s={start}")
