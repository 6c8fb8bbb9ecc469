"""Keypoint (KAGI-style) and staged rewards: camera lifting, path progress, stage ordering.

The camera conventions are checked against MuJoCo's renderer in tests/sim/test_keypoint_reward.py;
here every number is worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from robotrl.rewards.config import build_reward_model
from robotrl.rewards.keypoints import CameraModel, ColorProposer, KeypointReward, path_progress
from robotrl.rewards.staged import StagedReward

LOOK_DOWN = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # camera -z = world -z


def test_perspective_rays_and_projection_match_hand_computed_pinhole() -> None:
    # 90° vertical field of view, 100 px tall: focal = 50 px. Camera 2 m above the origin.
    camera = CameraModel(100, 100, (0.0, 0.0, 2.0), LOOK_DOWN, fovy=90.0)
    assert camera.focal == pytest.approx(50.0)
    # Keypoints are fractional: (59.5, 29.5) lies 10 px right of and 20 px above the image
    # centre (50, 50), pixel u spanning [u, u + 1): x = 10/50 = 0.2, y = +20/50 = 0.4 (up).
    point = camera.lift_to_plane(np.array([[59.5, 29.5]]), plane_z=0.0)[0]
    # The ray (0.2, 0.4, -1) from z = 2 meets z = 0 after 2 units: (0.4, 0.8, 0).
    np.testing.assert_allclose(point, [0.4, 0.8, 0.0], atol=1e-12)
    np.testing.assert_allclose(camera.project(point[None])[0], [59.5, 29.5], atol=1e-9)
    # Depth along the optical axis 2 is the same point.
    np.testing.assert_allclose(
        camera.lift_with_depth(np.array([[59.5, 29.5]]), np.array([2.0]))[0], point
    )


def test_orthographic_camera_lifts_pixels_by_metric_scale() -> None:
    # 0.64 m tall view over 32 px: 0.02 m per pixel; pixel 0's centre is 15.5 px left of centre.
    camera = CameraModel(32, 32, (0.0, 0.0, 1.0), LOOK_DOWN, fovy=0.64, orthographic=True)
    point = camera.lift_to_plane(np.array([[0.0, 31.0]]), plane_z=0.05)[0]
    np.testing.assert_allclose(point, [-0.31, -0.31, 0.05], atol=1e-12)


def test_camera_model_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="rotation matrix"):
        CameraModel(8, 8, (0, 0, 1), ((1, 0, 0), (0, 2, 0), (0, 0, 1)), fovy=45.0)
    with pytest.raises(ValueError, match="fovy"):
        CameraModel(8, 8, (0, 0, 1), LOOK_DOWN, fovy=190.0)
    camera = CameraModel(8, 8, (0.0, 0.0, 1.0), LOOK_DOWN, fovy=45.0)
    with pytest.raises(ValueError, match="behind the camera"):
        camera.lift_to_plane(np.array([[4.0, 4.0]]), plane_z=2.0)


def test_path_progress_is_minus_the_distance_still_to_go() -> None:
    path = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])  # length 3
    points = np.array([[0.5, 0.3], [1.2, 1.0], [1.0, 2.5], [-1.0, 0.0], [0.9, 0.05], [1.0, 2.0]])
    # closest path points: (0.5, 0) at 0.3 with 2.5 to go; (1, 1) at 0.2 with 1 to go; the end
    # (1, 2) at 0.5 (past the end is not "done"); the start at 1.0 with 3 to go; (0.9, 0) at
    # 0.05 with 2.1 to go; the end itself.
    expected = [-2.8, -1.2, -0.5, -4.0, -2.15, 0.0]
    np.testing.assert_allclose(path_progress(path, points), expected, atol=1e-12)


def keypoint_reward(**kwargs: Any) -> KeypointReward:
    camera = CameraModel(16, 16, (0.0, 0.0, 1.0), LOOK_DOWN, fovy=1.6, orthographic=True)
    return KeypointReward(camera, ColorProposer([[0, 255, 0]], tolerance=10), **kwargs)


def test_keypoint_reward_follows_progress_towards_the_marked_pixel() -> None:
    reward = keypoint_reward(ee_index=[1, 2], success_radius=0.1)
    frame = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    frame[0, 1, 3, 12] = 255  # green at column 12, row 3: x = (12.5 - 8) * 0.1, y = (8 - 3.5) * 0.1
    start = torch.tensor([[9.0, 0.0, 0.0]])  # proprio[1:3] is the tracked x, y
    reward.reset_episode(frame, start)
    np.testing.assert_allclose(reward.score(frame, start).numpy(), [-0.45 * np.sqrt(2)], atol=1e-6)
    target = np.array([0.45, 0.45])
    halfway = torch.tensor([[0.0, *(target / 2)], [0.0, *target]], dtype=torch.float32)
    scores = reward.score(frame.expand(2, -1, -1, -1), halfway)
    np.testing.assert_allclose(scores.numpy(), [-np.linalg.norm(target) / 2, 0.0], atol=1e-6)
    assert reward.is_success(scores).tolist() == [False, True]
    with pytest.raises(ValueError, match="no pixel within"):
        reward.reset_episode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), start)
    with pytest.raises(ValueError, match="camera model is 16x16"):
        reward.reset_episode(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), start)


def test_keypoint_reward_needs_proprio_and_a_reset() -> None:
    reward = keypoint_reward(ee_index=[0, 1])
    frames = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="before reset_episode"):
        reward.score(frames, torch.zeros(1, 2))
    frames[0, 1, 0, 0] = 255
    reward.reset_episode(frames, None)  # the keypoints come from the frame alone
    with pytest.raises(ValueError, match="env has none"):
        reward.score(frames, None)


PICK_STAGES = [
    {
        "name": "reach",
        "done": {"kind": "distance", "a": [0, 1], "b": [2, 3], "below": 0.1},
        "progress": {"kind": "distance", "a": [0, 1], "b": [2, 3], "start": 1.0},
    },
    {"name": "grasp", "done": {"kind": "proprio", "index": 4, "below": 0.5}},
    {
        "name": "lift",
        "done": {"kind": "proprio", "index": 5, "above": 0.2},
        "progress": {"kind": "proprio", "index": 5, "start": 0.0, "end": 0.2},
    },
]


def staged() -> StagedReward:
    model = build_reward_model("staged", {"stages": PICK_STAGES})
    assert isinstance(model, StagedReward)
    return model


def test_staged_reward_counts_stages_in_order_plus_progress() -> None:
    #         gripper xy, cube xy, gripper open, cube height
    proprio = torch.tensor(
        [
            [0.6, 0.0, 0.0, 0.0, 1.0, 0.0],  # reaching, 0.6 away: progress 0.4
            [0.05, 0.0, 0.0, 0.0, 1.0, 0.0],  # reached, gripper open
            [0.05, 0.0, 0.0, 0.0, 0.2, 0.1],  # grasped, cube half lifted
            [0.05, 0.0, 0.0, 0.0, 0.2, 0.3],  # lifted: all done
            [0.6, 0.0, 0.0, 0.0, 0.2, 0.3],  # far away: grasp/lift predicates hold but don't count
        ]
    )
    frames = torch.zeros(5, 3, 4, 4, dtype=torch.uint8)
    model = staged()
    assert model.stage_index(frames, proprio).tolist() == [0, 1, 2, 3, 0]
    expected = [0.4 / 3, 1 / 3, (2 + 0.5) / 3, 1.0, 0.4 / 3]
    scores = model.score(frames, proprio)
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-6)
    assert model.is_success(scores).tolist() == [False, False, False, True, False]


def test_staged_reward_is_monotone_across_stages() -> None:
    # Random states: every state in stage k scores above every state in stage k - 1.
    generator = torch.Generator().manual_seed(0)
    proprio = torch.rand(2000, 6, generator=generator)
    proprio[:, :2] *= 0.3  # many within reach
    frames = torch.zeros(len(proprio), 3, 1, 1, dtype=torch.uint8)
    model = staged()
    index, scores = model.stage_index(frames, proprio), model.score(frames, proprio)
    assert set(index.tolist()) == {0, 1, 2, 3}
    for k in range(1, 4):
        assert scores[index == k].min() > scores[index == k - 1].max()


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "non-empty list"),
        ([{"name": "x"}], "no `done` predicate"),
        ([{"done": {"kind": "proprio", "index": 0}}], "`above` and/or `below`"),
        ([{"done": {"kind": "pose", "below": 1}}], "predicate kind must be"),
        ([{"done": {"kind": "distance", "a": [0], "below": 1}}], "exactly one of `b` or `point`"),
        (
            [{"done": {"kind": "distance", "a": [0, 1], "point": [0], "below": 1}}],
            "different sizes",
        ),
        (
            [
                {
                    "done": {"kind": "proprio", "index": 0, "below": 1},
                    "progress": {"kind": "distance", "a": [0], "point": [1]},
                }
            ],
            "start > 0",
        ),
    ],
)
def test_staged_spec_errors_are_clear(stages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_reward_model("staged", {"stages": stages})


def test_keypoint_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="needs options"):
        build_reward_model("keypoints", {"camera": {}})
    camera = {"width": 8, "height": 8, "position": [0, 0, 1], "rotation": LOOK_DOWN, "fovy": 45.0}
    with pytest.raises(ValueError, match=r"proposer\.kind"):
        build_reward_model(
            "keypoints", {"camera": camera, "proposer": {"kind": "vlm"}, "ee_index": [0, 1]}
        )
    with pytest.raises(ValueError, match="2 or 3 proprio entries"):
        build_reward_model(
            "keypoints", {"camera": camera, "proposer": {"kind": "fixed"}, "ee_index": [0]}
        )
    assert math.isfinite(CameraModel(**{**camera, "rotation": LOOK_DOWN}).focal)
