"""The parsing metric (docs/parsing.md) on hand-made attention maps, with answers worked by hand."""

import numpy as np
import pytest

from tpt_keras.ops import parsing_metrics as pm


def _one_hot(num_clips, clips):
    """(T, K) attention: part k attends only to clip ``clips[k]``."""
    attention = np.zeros((num_clips, len(clips)))
    attention[clips, np.arange(len(clips))] = 1.0
    return attention


def test_centres_boundaries_and_segment_iou():
    attention = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 0.25], [0.0, 0.75]])[None]  # (1, T=4, K=2)
    np.testing.assert_allclose(pm.part_centres(attention), [[0.5, 2 * 0.25 + 3 * 0.75]])
    np.testing.assert_allclose(pm.part_boundaries([[0.5, 2.75]]), [[1.625]])
    np.testing.assert_allclose(pm.part_boundaries([[7.0, 2.0, 4.0]]), [[3.0, 5.5]])  # time order
    assert pm.segment_iou([0, 2], [1, 3]) == pytest.approx(1 / 3)
    assert pm.segment_iou([3, 3], [1.5, 3.5]) == 0.0 and pm.segment_iou([0, 1], [2, 3]) == 0.0
    np.testing.assert_allclose(pm.boundary_errors([3.0, 5.5], [1.5, 3.5, 6.0]), [1.5, 0.5, 0.5])


def test_two_videos_by_hand():
    num_clips = 10
    last = np.stack([_one_hot(num_clips, [1, 5, 8]),   # centres 1, 5, 8 -> boundaries 3, 6.5
                     _one_hot(num_clips, [7, 2, 4])])  # out of order: 2, 4, 7 -> 3, 5.5
    first = np.full_like(last, 1.0 / num_clips)  # layer 0 is uniform: must not be read
    attention = np.stack([first, last], axis=1)  # (B=2, L=2, T=10, K=3)
    boundaries = [np.array([2.5, 6.5]), np.array([1.5, 3.5, 6.0])]
    result = pm.parsing_metrics(attention, boundaries)
    # video 0: errors .5, 0; segments [-.5,3] [3,6.5] [6.5,9.5] vs [-.5,2.5] [2.5,6.5] [6.5,9.5]
    iou_0 = (3 / 3.5 + 3.5 / 4 + 1.0) / 3
    # video 1: nearest cuts 3, 3, 5.5; errors 1.5, .5, .5; segments [-.5,3] [3,3] [3,5.5] [5.5,9.5]
    # vs [-.5,1.5] [1.5,3.5] [3.5,6] [6,9.5]
    iou_1 = (2 / 3.5 + 0.0 + 2 / 3 + 3.5 / 4) / 4
    assert iou_0 == pytest.approx(0.9107142857) and iou_1 == pytest.approx(0.5282738095)
    assert result == pytest.approx({
        "boundary_mae": (0.5 + 0 + 1.5 + 0.5 + 0.5) / 5, "mean_iou": (iou_0 + iou_1) / 2,
        "iou@0.5": 1.0, "iou@0.75": 0.5, "parts_in_order": 0.5, "videos": 2, "boundaries": 5})
    # the first layer reads uniform attention: every part boundary at 4.5
    first_layer = pm.parsing_metrics(attention, boundaries, layer=0)
    assert first_layer["boundary_mae"] == pytest.approx((2 + 2 + 3 + 1 + 1.5) / 5)


def test_uniform_baseline_by_hand():
    # T = 20, K = 5: every centre at 9.5, so every part boundary at 9.5
    result = pm.uniform_baseline([np.array([4.5, 12.0])], num_clips=20, num_parts=5)
    # errors 5 and 2.5; segments [-.5,9.5] [9.5,9.5] [9.5,19.5] vs [-.5,4.5] [4.5,12] [12,19.5]
    assert result == pytest.approx({"boundary_mae": 3.75, "mean_iou": (5 / 10 + 0 + 7.5 / 10) / 3,
                                    "iou@0.5": 0.0, "iou@0.75": 0.0, "parts_in_order": 0.0,
                                    "videos": 1, "boundaries": 2})
    assert pm.uniform_attention(2, 3, 20, 5).shape == (2, 3, 20, 5)


def test_equal_parts_baseline_by_hand():
    # T = 20, K = 5: parts on clips 0-3, 4-7, ...: centres 1.5, 5.5, 9.5, 13.5, 17.5, boundaries
    # 3.5, 7.5, 11.5, 15.5; annotated 4.5 -> 3.5 (error 1), 12 -> 11.5 (error .5)
    result = pm.equal_parts_baseline([np.array([4.5, 12.0])], num_clips=20, num_parts=5)
    # segments [-.5,3.5] [3.5,11.5] [11.5,19.5] vs [-.5,4.5] [4.5,12] [12,19.5]
    iou = (4 / 5 + 7 / 8.5 + 7.5 / 8) / 3
    assert result == pytest.approx({"boundary_mae": 0.75, "mean_iou": iou, "iou@0.5": 1.0,
                                    "iou@0.75": 1.0, "parts_in_order": 1.0, "videos": 1,
                                    "boundaries": 2})
    # 7 clips into 3 parts: clips 0-1, 2-3, 4-6
    np.testing.assert_allclose(pm.equal_parts_attention(1, 1, 7, 3)[0, 0],
                               [[.5, 0, 0], [.5, 0, 0], [0, .5, 0], [0, .5, 0], [0, 0, 1 / 3],
                                [0, 0, 1 / 3], [0, 0, 1 / 3]])


def test_zero_length_annotated_step_is_left_out_and_bad_inputs():
    # annotated [1, 1] (step 1 never sampled); parts at 0, 2, 4 on T = 5 -> boundaries 1, 3
    attention = _one_hot(5, [0, 2, 4])[None, None]
    result = pm.parsing_metrics(attention, [np.array([1.0, 1.0])])
    # cuts 1, 1: segments [-.5,1] [1,1] [1,4.5] equal the truth; the empty step is not averaged
    assert result["mean_iou"] == pytest.approx(1.0) and result["boundary_mae"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least two parts"):
        pm.parsing_metrics(np.ones((1, 1, 5, 1)) / 5, [np.array([2.0])])
    with pytest.raises(ValueError, match=r"\(batch, layers, clips, parts\)"):
        pm.parsing_metrics(np.ones((5, 2)), [np.array([2.0])])
    with pytest.raises(ValueError, match="2 attention maps but 1 boundary lists"):
        pm.parsing_metrics(pm.uniform_attention(2, 1, 5, 2), [np.array([2.0])])
