"""Decoders: frame folders, GIF, PyAV videos, and every documented failure."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.io import decode
from data_pipelines.io.decode import VideoDecodeError


def _coded_frames(count, height=32, width=48):
    """Frame t is flat grey (10·t + 5) mod 250 with a white left quarter (value 250)."""
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t] = (10 * t + 5) % 250
        frames[t, :, : width // 4] = 250
    return frames


@pytest.fixture
def png_folder(tmp_path):
    frames = _coded_frames(12)
    folder = tmp_path / "01_02"
    order = [7, 0, 11, 3, 5, 1, 9, 2, 10, 4, 8, 6]  # written out of order: reading must sort by name
    for t in order:
        decode.write_frame_folder(str(folder), frames[t : t + 1], pattern="img_{:05d}.png", first=t + 1)
    return str(folder), frames


def test_frame_folder_png_exact_and_sorted(png_folder):
    folder, frames = png_folder
    out = decode.read_frames(folder)
    assert out.dtype == np.uint8 and out.shape == (12, 32, 48, 3)
    np.testing.assert_array_equal(out, frames)


def test_frame_folder_jpeg_close(tmp_path):
    frames = _coded_frames(5)
    decode.write_frame_folder(str(tmp_path / "f"), frames)
    out = decode.read_frames(str(tmp_path / "f"))
    assert out.shape == (5, 32, 48, 3)
    assert np.abs(out.astype(int) - frames.astype(int)).max() <= 4  # JPEG quality 95, flat regions


def test_indices_and_sampler_decode_only_requested_frames(png_folder):
    folder, frames = png_folder
    out = decode.read_frames(folder, indices=[0, 0, 5, 11])
    np.testing.assert_array_equal(out, frames[[0, 0, 5, 11]])
    out = decode.read_frames(folder, indices=lambda n: np.arange(n)[::4])
    np.testing.assert_array_equal(out, frames[[0, 4, 8]])
    # A broken frame that is not requested is never touched; requesting it names the file.
    broken = os.path.join(folder, "img_00010.png")
    with open(broken, "wb") as handle:
        handle.write(b"not a png")
    np.testing.assert_array_equal(decode.read_frames(folder, indices=[1, 2]), frames[[1, 2]])
    with pytest.raises(VideoDecodeError, match="img_00010.png"):
        decode.read_frames(folder, indices=[9])
    with pytest.raises(VideoDecodeError, match="out of range"):
        decode.read_frames(folder, indices=[12])


def test_count_frames_folder(png_folder):
    assert decode.count_frames(png_folder[0]) == 12


@pytest.mark.parametrize("name, size", [("clip.mp4", (32, 48)), ("clip.avi", (32, 48)), ("odd.mp4", (27, 45))])
def test_video_round_trip(tmp_path, name, size):
    frames = _coded_frames(10, *size)
    path = decode.write_video(str(tmp_path / name), frames)
    out = decode.read_frames(path)
    assert out.dtype == np.uint8 and out.shape == (10, *size, 3)
    # Lossy codec + colour subsampling: compare the flat right part of each frame.
    right = out[:, 4:-4, size[1] // 2 :].astype(float).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(right, 10 * np.arange(10) + 5, atol=6)
    np.testing.assert_array_equal(decode.read_frames(path, indices=[9, 0]), out[[9, 0]])


def test_real_gif(shared_data):
    gif = str(shared_data / "samples" / "diving_sample.gif")
    out = decode.read_frames(gif)
    assert out.shape == (21, 281, 500, 3) and out.dtype == np.uint8
    assert 0 < out.mean() < 255


def test_truncated_gif_refused(shared_data, tmp_path):
    data = (shared_data / "samples" / "diving_sample.gif").read_bytes()
    path = tmp_path / "cut.gif"
    path.write_bytes(data[: len(data) // 2])  # tf.io.decode_gif alone would return 10 frames silently
    with pytest.raises(VideoDecodeError, match=r"cut\.gif: truncated GIF"):
        decode.read_frames(str(path))
    (tmp_path / "fake.gif").write_bytes(b"hello world")
    with pytest.raises(VideoDecodeError, match="not a GIF"):
        decode.read_frames(str(tmp_path / "fake.gif"))


def test_corrupt_mp4_refused(tmp_path):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(VideoDecodeError, match=r"random\.mp4: corrupt or unreadable video"):
        decode.read_frames(str(path))


def test_truncated_mp4_refused(tmp_path):
    good = decode.write_video(str(tmp_path / "good.mp4"), _coded_frames(30))
    data = open(good, "rb").read()
    for fraction in (0.3, 0.6, 0.9):
        cut = tmp_path / f"cut{int(fraction * 10)}.mp4"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(VideoDecodeError, match=cut.name):
            decode.read_frames(str(cut))


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(VideoDecodeError, match="nowhere: no such file or frame folder"):
        decode.read_frames(str(tmp_path / "nowhere"))
    with pytest.raises(VideoDecodeError, match="nowhere.mp4: no such file"):
        decode.read_frames(str(tmp_path / "nowhere.mp4"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no frames here")
    with pytest.raises(VideoDecodeError, match="empty: frame folder holds no"):
        decode.read_frames(str(tmp_path / "empty"))
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(VideoDecodeError, match="unknown video format"):
        decode.read_frames(str(tmp_path / "clip.txt"))
    assert issubclass(VideoDecodeError, ValueError)


def test_frames_of_different_sizes_refused(tmp_path):
    decode.write_frame_folder(str(tmp_path / "f"), _coded_frames(2, 32, 48))
    decode.write_frame_folder(str(tmp_path / "f"), _coded_frames(1, 16, 48), first=3)
    with pytest.raises(VideoDecodeError, match="img_00003.jpg has shape"):
        decode.read_frames(str(tmp_path / "f"))


def test_skip_log_counts_and_warns(tmp_path, png_folder, caplog):
    log = decode.SkipLog()
    with caplog.at_level(logging.WARNING, logger="data_pipelines.io.decode"):
        assert decode.read_frames_or_skip(str(tmp_path / "gone"), skip_log=log) is None
        assert decode.read_frames_or_skip(png_folder[0], skip_log=log).shape == (12, 32, 48, 3)
    assert log.count == 1 and "gone" in log.items[0][0]
    assert "skipping bad sample" in caplog.text and "gone" in caplog.text
    with pytest.raises(VideoDecodeError):
        decode.read_frames_or_skip(str(tmp_path / "gone"))


def test_tf_read_frames_in_dataset(png_folder, tmp_path):
    folder, frames = png_folder
    dataset = tf.data.Dataset.from_tensor_slices([folder, folder]).map(decode.tf_read_frames, num_parallel_calls=2)
    assert dataset.element_spec.shape.as_list() == [None, None, None, 3]
    assert dataset.element_spec.dtype == tf.uint8
    for out in dataset:
        np.testing.assert_array_equal(out.numpy(), frames)
    missing = str(tmp_path / "missing_dir")
    bad = tf.data.Dataset.from_tensor_slices([missing]).map(decode.tf_read_frames)
    with pytest.raises(tf.errors.OpError, match="missing_dir: no such file") as info:
        next(iter(bad))
    assert decode.decode_error_in(info.value) == f"{missing}: no such file or frame folder"
    assert decode.decode_error_in(ValueError("other")) is None


# --------------------------------------------------------------------------------------------- streaming video decode
def _reference_decode(path):
    """Every frame of a video, decoded directly with PyAV (independent of data_pipelines.io.decode)."""
    import av

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_video_decode_keeps_only_requested_frames(tmp_path):
    import tracemalloc

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (300, 64, 96, 3), dtype=np.uint8)
    path = decode.write_video(str(tmp_path / "long.mp4"), frames)
    reference = _reference_decode(path)
    assert reference.shape == (300, 64, 96, 3)
    wanted = [299, 3, 3, 150, 0, 77, 200, 201, 12, 250]  # unsorted, a repeat, the last frame
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        got = decode.read_frames(path, wanted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, reference[wanted])
    frame_bytes = 64 * 96 * 3
    assert peak < 40 * frame_bytes, f"peak {peak / frame_bytes:.0f} frames for 9 distinct requested"  # whole: 300+
    assert decode.count_frames(path) == 300
    np.testing.assert_array_equal(decode.read_frames(path, lambda n: [n - 1]), reference[[299]])
    np.testing.assert_array_equal(decode.read_frames(path), reference)
    with pytest.raises(VideoDecodeError, match=r"long\.mp4: frame indices 0\.\.300 out of range for 300 frames"):
        decode.read_frames(path, [0, 300])


def test_video_frame_count_needs_no_decoding(tmp_path, monkeypatch):
    path = decode.write_video(str(tmp_path / "v.avi"), _coded_frames(45))
    monkeypatch.setattr(decode, "_decode_positions", None)  # counting must not decode
    assert decode.count_frames(path) == 45


def test_unreadable_finds_bad_sources_without_decoding_videos(tmp_path, png_folder, monkeypatch):
    good = decode.write_video(str(tmp_path / "good.mp4"), _coded_frames(12))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 500)
    monkeypatch.setattr(decode, "_decode_positions", None)
    bad = decode.unreadable([png_folder[0], good, str(corrupt), "/etc/passwd", good])
    assert sorted(bad) == ["/etc/passwd", str(corrupt)]
    assert bad["/etc/passwd"].startswith("/etc/passwd: unknown video format")
    assert bad[str(corrupt)].startswith(f"{corrupt}: corrupt or unreadable video")


def test_frame_times_from_the_video_rate_and_the_gif_durations(tmp_path, png_folder):
    from PIL import Image

    frames = np.random.default_rng(0).integers(0, 255, (12, 16, 16, 3)).astype(np.uint8)
    video = decode.write_video(str(tmp_path / "v.mp4"), frames, fps=25)
    np.testing.assert_allclose(decode.frame_times(video, [0, 5, 10]), [0.0, 0.2, 0.4])  # n / 25
    gif = str(tmp_path / "g.gif")
    images = [Image.fromarray(frame) for frame in frames[:3]]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=[100, 200, 300], loop=0)
    np.testing.assert_allclose(decode.frame_times(gif, [0, 1, 2]), [0.0, 0.1, 0.3])  # 0, 0.1, 0.1+0.2
    assert decode.frame_times(png_folder[0], [0, 1]) is None  # a frame folder has no timing


def test_read_frames_with_indices_returns_the_resolved_positions(png_folder):
    folder, written = png_folder
    frames, numbers = decode.read_frames_with_indices(folder, lambda n: [n - 1, 0, 0])
    np.testing.assert_array_equal(numbers, [11, 0, 0])  # 12 frames
    np.testing.assert_array_equal(frames, written[[11, 0, 0]])
