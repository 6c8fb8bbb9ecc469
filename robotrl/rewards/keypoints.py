"""Keypoint / affordance rewards (KAGI-style): waypoints marked on the first image, lifted to 3D.

At the start of an episode a *proposer* marks keypoints on the first frame, in the order the
tracked point (end effector or object) should visit them: a VLM asked "where should the gripper
go", a person clicking, or a script (:class:`ColorProposer` finds coloured blobs; tests and the
built-in task use it). Each pixel is lifted to 3D with the camera model: the pixel's viewing ray
is intersected with a known plane (the table, ``plane_z``), or followed for a measured depth.
The waypoints form a path ``w_1, .., w_K``.

The score is minus the distance still to go: ``−(d + (L − s))``, where ``d`` is the distance
from the tracked position to the closest point of the path, ``s`` that point's arc length from
``w_1`` and ``L`` the path's length (metres); with one keypoint, minus the distance to it. It is
0 on the last waypoint (and, with ``success_radius``, anywhere within that radius of it, as KAGI
counts a keypoint reached within a threshold). This is KAGI's "negative distance to the next
keypoint" plus the length of the path left after it, in a stateless form (KAGI switches
keypoints when one is reached), so it depends only on the current position and the keypoints
(which stay visible in the images): online scoring and scoring a finished episode in one batch
agree, and the reward is Markov for the agent. Three forms we tried first and dropped, each of
which DrQ-v2 failed to learn from on the built-in task: progress alone (arc length over ``L``
along a path from the start position) scores every point past the last waypoint as done, and
the agent parked against the wall behind the target; dividing by ``L`` makes the scale differ
wildly between episodes; and any path from the start position makes the reward depend on where
the episode began, which the agent cannot see after the first step. Used directly the score is
a dense reward; as a potential (``as_potential=True``) it only reshapes another reward (its
shaped return telescopes to ``γ^T Φ(o_T) − Φ(o_0)``), e.g. KAGI's sparse success reward
(``task.reward.success_reward``, paid within ``success_radius``). That pairing is what DrQ-v2
learns the built-in task from (``+reward=keypoints_builtin_reach``); the score used directly
learned slowly there (figures in ``tests/sim/test_learning.py``). The tracked point is read from
``proprio[ee_index]`` (2 entries: compared with the waypoints' x, y; 3: x, y, z).

Camera conventions are MuJoCo's: the camera looks along its ``-z`` axis with ``+y`` up; pixel
``(u, v)`` is column ``u`` from the left and row ``v`` from the top, centre at ``+0.5``;
``rotation`` has the camera axes as columns, in world coordinates (MuJoCo's ``cam_xmat``).
``robotrl_sim.cameras.camera_model`` builds one from a MuJoCo camera.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robotrl.rewards.base import RewardModel

#: Proposes keypoints on one frame (uint8 ``[H, W, 3]``): pixels ``[K, 2]`` as (column, row).
Proposer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CameraModel:
    """A pinhole (or orthographic) camera: where it is, where it looks, and its image size.

    ``fovy`` is the vertical field of view in degrees, or for an orthographic camera the
    vertical extent of the view in metres (MuJoCo's meaning of ``fovy`` for both).
    """

    width: int
    height: int
    position: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]  # 3x3, camera axes as columns (world frame)
    fovy: float
    orthographic: bool = False

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        rotation = np.asarray(self.rotation, dtype=np.float64)
        if rotation.shape != (3, 3) or not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6):
            raise ValueError("camera rotation must be a 3x3 rotation matrix (orthonormal columns)")
        if not self.fovy > 0 or (not self.orthographic and self.fovy >= 180):
            raise ValueError(
                f"fovy must be in (0, 180) degrees (or > 0 m orthographic): {self.fovy}"
            )

    @property
    def _rotation(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=np.float64)

    @property
    def focal(self) -> float:
        """Pixels per unit of camera-frame ``x/z`` (perspective) or per metre (orthographic)."""
        if self.orthographic:
            return self.height / self.fovy
        return self.height / 2 / math.tan(math.radians(self.fovy) / 2)

    def rays(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World-frame origins and unit directions ``[K, 3]`` of the rays through ``pixels``."""
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        x = (pixels[:, 0] + 0.5 - self.width / 2) / self.focal
        y = -(pixels[:, 1] + 0.5 - self.height / 2) / self.focal
        rotation, position = self._rotation, np.asarray(self.position, dtype=np.float64)
        if self.orthographic:
            offsets = np.stack([x, y, np.zeros_like(x)], axis=1)
            origins = position + offsets @ rotation.T
            directions = np.broadcast_to(-rotation[:, 2], origins.shape).copy()
        else:
            local = np.stack([x, y, -np.ones_like(x)], axis=1)
            directions = local @ rotation.T
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            origins = np.broadcast_to(position, directions.shape).copy()
        return origins, directions

    def lift_to_plane(self, pixels: np.ndarray, plane_z: float) -> np.ndarray:
        """3D points ``[K, 3]`` where the pixels' rays meet the plane ``z = plane_z``."""
        origins, directions = self.rays(pixels)
        if np.any(np.abs(directions[:, 2]) < 1e-9):
            raise ValueError("a keypoint's viewing ray is parallel to the plane z = plane_z")
        distance = (plane_z - origins[:, 2]) / directions[:, 2]
        if np.any(distance <= 0):
            raise ValueError(f"the plane z = {plane_z} is behind the camera for some keypoint")
        return origins + distance[:, None] * directions

    def lift_with_depth(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """3D points ``[K, 3]`` at ``depth`` (distance along the optical axis, MuJoCo's depth)."""
        origins, directions = self.rays(pixels)
        along_axis = directions @ -self._rotation[:, 2]  # cos of the angle to the optical axis
        return origins + (np.asarray(depth, dtype=np.float64) / along_axis)[:, None] * directions

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixels ``[K, 2]`` (column, row; fractional) of world points ``[K, 3]``."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        local = (points - np.asarray(self.position)) @ self._rotation  # camera frame
        if self.orthographic:
            x, y = local[:, 0], local[:, 1]
        else:
            x, y = local[:, 0] / -local[:, 2], local[:, 1] / -local[:, 2]
        return np.stack(
            [x * self.focal + self.width / 2 - 0.5, -y * self.focal + self.height / 2 - 0.5], 1
        )


@dataclass
class ColorProposer:
    """Marks, in order, the centroid of the pixels within ``tolerance`` of each colour.

    A scripted stand-in for a VLM or a person: it finds targets drawn in a known colour."""

    colors: Sequence[Sequence[int]]
    tolerance: float = 40.0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        image = np.asarray(frame, dtype=np.float64)
        keypoints = []
        for color in self.colors:
            distance = np.linalg.norm(image - np.asarray(color, dtype=np.float64), axis=-1)
            rows, cols = np.nonzero(distance <= self.tolerance)
            if len(rows) == 0:
                raise ValueError(f"no pixel within {self.tolerance} of colour {list(color)}")
            keypoints.append([cols.mean(), rows.mean()])
        return np.asarray(keypoints)


@dataclass
class FixedProposer:
    """Keypoints given up front (a person marked them once), ``[[column, row], ...]``."""

    pixels: Sequence[Sequence[float]] = field(default_factory=list)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return np.asarray(self.pixels, dtype=np.float64).reshape(-1, 2)


class KeypointReward(RewardModel):
    """Progress of the tracked point along the waypoints lifted from the first frame."""

    def __init__(
        self,
        camera: CameraModel,
        proposer: Proposer,
        *,
        ee_index: Sequence[int],
        plane_z: float = 0.0,
        success_radius: float | None = None,
    ) -> None:
        if len(ee_index) not in (2, 3):
            raise ValueError(f"ee_index must name 2 or 3 proprio entries, got {list(ee_index)}")
        self.camera, self.proposer = camera, proposer
        self.ee_index = list(ee_index)
        self.plane_z, self.success_radius = float(plane_z), success_radius
        self.path: np.ndarray | None = None  # [K, D]: the waypoints

    def tracked(self, proprio: torch.Tensor | None) -> np.ndarray:
        if proprio is None:
            raise ValueError(
                "the keypoint reward reads the tracked point from proprio; the env has none"
            )
        return proprio.detach().cpu().double().numpy().reshape(len(proprio), -1)[:, self.ee_index]

    def reset_episode(self, frames: torch.Tensor, proprio: torch.Tensor | None = None) -> None:
        frame = frames[0].permute(1, 2, 0).cpu().numpy()  # [H, W, C]
        if frame.shape[:2] != (self.camera.height, self.camera.width):
            raise ValueError(
                f"frames are {frame.shape[1]}x{frame.shape[0]} but the camera model is "
                f"{self.camera.width}x{self.camera.height}"
            )
        pixels = np.asarray(self.proposer(frame), dtype=np.float64).reshape(-1, 2)
        if len(pixels) == 0:
            raise ValueError("the proposer marked no keypoint")
        waypoints = self.camera.lift_to_plane(pixels, self.plane_z)[:, : len(self.ee_index)]
        self.path = waypoints

    def score(
        self,
        frames: torch.Tensor,
        proprio: torch.Tensor | None = None,
        instruction: str | None = None,
    ) -> torch.Tensor:
        if self.path is None:
            raise RuntimeError("KeypointReward.score before reset_episode: no waypoints yet")
        points = self.tracked(proprio)
        progress = path_progress(self.path, points)
        if self.success_radius is not None:  # the last keypoint counts as reached within it
            arrived = np.linalg.norm(points - self.path[-1], axis=1) <= self.success_radius
            progress = np.where(arrived, 0.0, progress)
        return torch.as_tensor(progress, dtype=torch.float32)

    def is_success(self, scores: torch.Tensor) -> torch.Tensor | None:
        if self.success_radius is None:
            return None
        return scores >= 0.0


def path_progress(path: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``−(d + (L − s))`` for each point, ``[N]`` (module docstring): the distance ``d`` to the
    closest path point plus the path length left after it (arc length ``s`` of ``L``)."""
    if len(path) == 1:
        return -np.linalg.norm(points - path[0], axis=1)
    starts, ends = path[:-1], path[1:]
    segments = ends - starts  # [S, D]
    lengths = np.linalg.norm(segments, axis=1)
    offsets = points[:, None, :] - starts[None]  # [N, S, D]
    along = np.einsum("nsd,sd->ns", offsets, segments) / np.maximum(lengths**2, 1e-12)
    along = np.clip(along, 0.0, 1.0)
    closest = starts[None] + along[..., None] * segments[None]
    distance = np.linalg.norm(points[:, None, :] - closest, axis=-1)
    segment = distance.argmin(axis=1)
    rows = np.arange(len(points))
    left = np.concatenate([np.cumsum(lengths[::-1])[::-1], [0.0]])  # length after segment start
    to_go = left[segment] - along[rows, segment] * lengths[segment]
    return -(to_go + distance[rows, segment])


def build_reward_model(options: dict[str, Any]) -> KeypointReward:
    """``task.reward.kind=keypoints``: ``camera`` (CameraModel fields), ``proposer`` and
    ``ee_index``; optional ``plane_z``, ``success_radius`` (see ``conf/reward/keypoints.yaml``)."""
    missing = [key for key in ("camera", "proposer", "ee_index") if key not in options]
    if missing:
        raise ValueError(f"the keypoints reward needs options {missing}")
    camera_options = dict(options["camera"])
    camera_options["position"] = tuple(camera_options.get("position", ()))
    camera_options["rotation"] = tuple(tuple(row) for row in camera_options.get("rotation", ()))
    camera = CameraModel(**camera_options)
    proposer_options = dict(options["proposer"])
    kind = proposer_options.pop("kind", None)
    proposer: Proposer
    if kind == "color":
        proposer = ColorProposer(**proposer_options)
    elif kind == "fixed":
        proposer = FixedProposer(**proposer_options)
    else:
        raise ValueError(f"keypoints proposer.kind must be 'color' or 'fixed', got {kind!r}")
    return KeypointReward(
        camera,
        proposer,
        ee_index=list(options["ee_index"]),
        plane_z=float(options.get("plane_z", 0.0)),
        success_radius=options.get("success_radius"),
    )
