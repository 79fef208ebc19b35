"""The built-in synthetic video generator: seeded, scores follow the documented formula."""

import numpy as np
import pytest

from data_pipelines.synthetic import videos as sv


def test_phase_boundaries_are_ordered_and_cover_the_video():
    rng = np.random.default_rng(0)
    for _ in range(50):
        bounds = sv.phase_boundaries(100, 5, rng, min_length=8)
        assert bounds[0] == 0 and bounds[-1] == 100 and len(bounds) == 6
        assert np.all(np.diff(bounds) >= 8)


def test_phase_boundaries_reject_too_short_video():
    with pytest.raises(ValueError, match="num_frames=20"):
        sv.phase_boundaries(20, 5, np.random.default_rng(0), min_length=8)


def test_score_formula_known_answers():
    assert sv.score_from_qualities(np.ones(5)) == pytest.approx(100.0)
    assert sv.score_from_qualities(np.zeros(5)) == pytest.approx(0.0)
    # only the middle phase (weight 3 of 9) perfect
    assert sv.score_from_qualities(np.array([0, 0, 1, 0, 0])) == pytest.approx(100 * 3 / 9)


def test_videos_are_seeded_and_phases_show_their_colour():
    first = list(sv.make_synthetic_videos(2, size=32, seed=7))
    again = list(sv.make_synthetic_videos(2, size=32, seed=7))
    other = list(sv.make_synthetic_videos(2, size=32, seed=8))
    for (_, f1, s1, _, _), (_, f2, s2, _, _) in zip(first, again):
        np.testing.assert_array_equal(f1, f2)
        assert s1 == s2
    assert first[0][2] != other[0][2]
    _, frames, score, qualities, bounds = first[0]
    assert frames.dtype == np.uint8 and frames.shape[1:] == (32, 32, 3)
    assert score == pytest.approx(sv.score_from_qualities(qualities))
    for k in range(5):  # the corner pixel is background: the phase's own colour
        corner = frames[bounds[k] : bounds[k + 1], 0, 0].astype(np.float32)
        np.testing.assert_allclose(corner, np.broadcast_to(sv._PHASE_COLOURS[k], corner.shape), atol=1)


def test_better_phase_draws_a_larger_disc():
    bounds = np.array([0, 10, 20])
    frames = sv.render_video(np.array([0.0, 1.0]), bounds, size=64, rng=np.random.default_rng(0))
    bright = (frames.min(-1) > 200).reshape(20, -1).sum(1)  # disc pixels per frame
    assert bright[10:].mean() > 3 * bright[:10].mean()


def test_dataset_is_written_as_frame_folders_and_manifest(tmp_path):
    manifest = sv.write_synthetic_video_dataset(str(tmp_path), num_train=3, num_test=2, size=32,
                                                seed=1, progress=False)
    rows = [line.split(",") for line in open(manifest).read().strip().splitlines()]
    assert rows[0] == ["path", "score", "split"]
    assert [r[2] for r in rows[1:]] == ["train"] * 3 + ["test"] * 2
    expected = [s for _, _, s, _, _ in sv.make_synthetic_videos(5, size=32, seed=1)]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], expected, atol=1e-4)
    frames = sorted((tmp_path / "video_0000").glob("img_*.jpg"))
    assert frames[0].name == "img_00001.jpg" and len(frames) >= 96
