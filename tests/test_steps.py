"""Step labels on the clip grid: known answers worked out by hand on small label arrays."""

import numpy as np
import pytest

from data_pipelines.video import steps
from tpt_keras.ops import parsing_metrics


def test_label_runs_and_back():
    assert steps.label_runs([4, 4, 25, 36, 36]) == ((4, 2), (25, 1), (36, 2))
    assert steps.label_runs(np.array([3, 3, 8, 8, 3, 3])) == ((3, 2), (8, 2), (3, 2))  # 3 comes back
    assert steps.frame_labels(((4, 2), (25, 1))).tolist() == [4, 4, 25]
    assert steps.frame_step_index(((3, 2), (8, 2), (3, 1))).tolist() == [0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="at least one frame"):
        steps.label_runs([])


def _grid(num_frames, clip_len):
    """Non-overlapping clips of consecutive frames: (num_frames // clip_len, clip_len)."""
    return np.arange(num_frames).reshape(-1, clip_len)


@pytest.mark.parametrize("runs, frames, clip_len, clip_steps, boundaries", [
    # step 0 fills clips 0-1 exactly: boundary at the edge between clips 1 and 2
    (((1, 8), (2, 12)), 20, 4, [0, 0, 1, 1, 1], [1.5]),
    # step 0 ends halfway through clip 1 (frames 4,5 of 4..7): b = 1 - 1/2 + 1/2 = 1.0; the tie
    # goes to the earlier step; step 1 ends with clip 3 (3 + 1/2)
    (((5, 6), (7, 10), (9, 4)), 20, 4, [0, 0, 1, 1, 2], [1.0, 3.5]),
    # a label that comes back is a new step
    (((3, 2), (8, 2), (3, 2)), 6, 2, [0, 1, 2], [0.5, 1.5]),
    # step 0 ends a quarter into clip 2 (frame 8 of 8..11): 2 - 1/2 + 1/4; clip 2 is mostly step 1
    (((1, 9), (2, 3)), 12, 4, [0, 0, 1], [1.75]),
])
def test_non_overlapping_clips(runs, frames, clip_len, clip_steps, boundaries):
    grid = _grid(frames, clip_len)
    assert steps.clip_steps(runs, grid).tolist() == clip_steps
    np.testing.assert_allclose(steps.step_boundaries(runs, grid), boundaries)


def test_overlapping_clips_with_repeated_frames():
    # 10 frames, 3 clips of 4 with stride 2 -> 8 sampled frames: floor(linspace(0, 9, 8)) =
    # floor(0, 1.29, 2.57, 3.86, 5.14, 6.43, 7.71, 9) = 0 1 2 3 5 6 7 9; clips start at 0, 2, 4
    indices = steps.clip_frame_indices(10, num_clips=3, clip_len=4, clip_stride=2, sampling="linspace")
    assert indices.tolist() == [[0, 1, 2, 3], [2, 3, 5, 6], [5, 6, 7, 9]]
    runs = ((1, 4), (2, 6))  # frames 0-3 | 4-9
    np.testing.assert_allclose(steps.clip_step_fractions(runs, indices), [[1, 0], [0.5, 0.5], [0, 1]])
    assert steps.clip_steps(runs, indices).tolist() == [0, 0, 1]
    np.testing.assert_allclose(steps.step_boundaries(runs, indices), [-0.5 + 1 + 0.5])
    # a dive shorter than the sampled length repeats frames: 5 frames, 8 samples,
    # floor(0, .57, 1.14, 1.71, 2.29, 2.86, 3.43, 4) = 0 0 1 1 2 2 3 4
    short = steps.clip_frame_indices(5, num_clips=3, clip_len=4, clip_stride=2)
    assert short.tolist() == [[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 4]]
    np.testing.assert_allclose(steps.step_boundaries(((1, 2), (2, 3)), short), [-0.5 + 1 + 0.5])


def test_window_sampling_and_the_default_protocol_grid():
    assert steps.clip_frame_indices(30, num_clips=2, clip_len=3, clip_stride=2, sampling="window",
                                    start=4).tolist() == [[4, 5, 6], [6, 7, 8]]
    grid = steps.clip_frame_indices(103)  # 20 clips x 8, stride 5 over exactly 103 frames
    assert grid.shape == (20, 8) and grid[0].tolist() == list(range(8)) and grid[19, -1] == 102
    with pytest.raises(ValueError, match="sampling"):
        steps.clip_frame_indices(30, sampling="random")


def test_step_missed_by_the_sampling_has_zero_length():
    runs = ((1, 5), (2, 1), (3, 4))  # step 1 is frame 5 only, never sampled
    indices = np.array([[0, 2], [4, 6], [8, 9]])
    assert steps.clip_steps(runs, indices).tolist() == [0, 0, 2]
    boundaries = steps.step_boundaries(runs, indices)
    np.testing.assert_allclose(boundaries, [1.0, 1.0])
    np.testing.assert_allclose(parsing_metrics.step_segments(boundaries, 3), [[-0.5, 1.0], [1.0, 1.0], [1.0, 2.5]])


def test_indices_outside_the_labels_are_refused():
    with pytest.raises(ValueError, match="outside the 4 labelled frames"):
        steps.clip_step_fractions(((1, 2), (2, 2)), np.array([[0, 4]]))
