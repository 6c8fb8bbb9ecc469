"""Distracting backgrounds for pixel tasks, in the spirit of the Distracting Control Suite.

The Distracting Control Suite (Stone et al., 2021) tests whether a pixel agent ignores what does
not matter: it plays a DAVIS video in the skybox, makes the floor partly transparent so the video
shows through it, and draws a new video for every episode. DMC-GB's ``color_hard`` (Hansen & Wang,
2021) instead gives the scene random colours each episode. Both are used to evaluate agents built
to be robust to visual distractors (e.g. RePo, Zhu et al., 2023).

Here the same setting is built without any dataset, for the ``builtin`` and ``dmc`` suites:

- ``kind="moving"``: a procedural background video, new every episode. It is a function of image
  coordinates and simulated time: a drifting colour gradient, a few travelling colour waves and
  several Gaussian colour blobs bouncing across the image at 0.1-0.5 image widths per second.
  Like a natural video it changes every frame, is smooth in space and time, and carries colours
  and motion that have nothing to do with the task.
- ``kind="colors"``: one random colour for the sky and one for the floor, new every episode
  (static within it).

**Where the background goes.** A second render of the same camera with MuJoCo's segmentation
(``mjRND_SEGMENT``) labels each pixel by the geom it shows. Pixels of no geom (sky, skybox) get
the background blended in with weight ``alpha`` (the suite's ``video_alpha``); pixels of plane
geoms (floors, ground) keep ``floor_alpha`` of their own colour and take the rest from the
background (the suite's ``ground_plane_alpha``). Every other pixel — the agent, targets, walls,
props — is left exactly as the undistracted render drew it. ``floor_alpha`` defaults to the
suite's per-domain values: 0 for reacher (and for ``builtin/reach``, also seen from above), 1 for
walker and cheetah (their floors stay, with the grid that shows how fast they move), 0.3 for
every other domain.

**Seeds.** The background stream is separate from the task's random state, so switching
distractors on changes no physics: an episode reset with ``reset(seed=s)`` shows the background
drawn from ``(s, seed_offset)``; later unseeded resets continue that stream, as the task does.
``num_videos=N`` draws each episode's video from a fixed pool of N videos that depends only on
``seed_offset`` (the suite's finite video sets); different ``seed_offset`` values give different
pools, which is how training and evaluation use different backgrounds: e.g. train with
``{kind: moving, num_videos: 4, seed_offset: 0}`` and evaluate with
``robotrl-eval ... '+task_options.distractors={kind:moving,num_videos:4,seed_offset:1}'`` (the
whole mapping: ``task_options`` replaces the option, it does not merge into it).

**Cost.** One segmentation render per frame (about as dear as the colour render) plus the
compositing (~0.3 ms at 84×84) and, for ``moving``, the video frame (~1 ms at 84×84; every term
is separable in x and y, so it is built from outer products). Agent steps per second with
distractors relative to without, measured on the project's 2 shared CPU cores (other jobs
running, so runs vary): ``builtin/reach`` 32 px 0.36-0.45 (``colors`` 0.44-0.54; 0.18 in one
heavily loaded run), DMC ``walker_walk`` 84 px 0.87-0.92 with default visuals, 0.64-0.75 with
``fast_render``, ``cartpole_swingup`` 64 px ``fast_render`` 0.48-0.59.

**Departures from the published setups**, and why:

- Procedural videos instead of DAVIS videos: no dataset can be downloaded here. The videos are
  colourful and moving, but lack the objects, textures and camera motion of real footage.
- The background is composited in image space after rendering, not uploaded as a skybox
  texture. For fixed cameras and cameras that track by translation (the usual DMC pixel
  cameras) the skybox does not move in the image, so the two agree; a camera that rotates would
  turn the suite's skybox with the view, while ours stays put in the image. Rendering stays
  untouched and the mask is exact per pixel. Shadows and reflections on the floor are blended
  with the floor (the suite keeps them as drawn on its partly transparent floor).
- Only the background distraction: the suite's camera-pose and body-colour distractions, and
  DMC-GB's random agent colours, are not implemented (``colors`` recolours sky and floor only).
- The video advances with simulated time (the suite steps one video frame per control step, and
  ping-pongs through a clip's frames); ours never repeats within an episode.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import mujoco
import numpy as np

from robotrl_sim._mujoco import FixedCameraRenderer

KINDS = ("moving", "colors")
# Values of the ``distractors`` option that mean "no distractors".
OFF_VALUES = (None, False, "none", "off")
# Distracting Control Suite's ground-plane alphas; other domains get DEFAULT_FLOOR_ALPHA.
FLOOR_ALPHAS = {"reacher": 0.0, "walker": 1.0, "cheetah": 1.0, "builtin_reach": 0.0}
DEFAULT_FLOOR_ALPHA = 0.3
# Mixed into every seed, so a background stream never coincides with a task's own stream.
_STREAM_SALT = 0x5EED_D157
_POOL_SALT = 0x900_1D157

# Shape of a procedural video: counts, and ranges its random parameters are drawn from.
_NUM_WAVES = 3
_NUM_BLOBS = 6
_WAVE_CYCLES = (1.0, 4.0)  # spatial frequency, cycles per image width
_WAVE_SPEED = (0.1, 0.4)  # image widths per second
_BLOB_SIGMA = (0.05, 0.18)  # image widths
_BLOB_SPEED = (0.1, 0.5)  # image widths per second

SEGMENTATION_BACKGROUND = -1  # object id and type of pixels that show no geom


@dataclass(frozen=True)
class DistractorOptions:
    """The ``distractors`` option: ``"moving"``/``"colors"`` or a mapping of these fields."""

    kind: Literal["moving", "colors"] = "moving"
    # Seeds the background stream (and the pool of num_videos); use another value for evaluation.
    seed_offset: int = 0
    alpha: float = 1.0  # weight of the background on sky pixels (the suite's video_alpha)
    # Share of the floor's own colour kept on floor pixels; None: the suite's per-domain value.
    floor_alpha: float | None = None
    num_videos: int | None = None  # None: a new video every episode; N: one of N fixed videos

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"distractors kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}"
            )
        if not _is_int(self.seed_offset) or self.seed_offset < 0:
            raise ValueError(
                f"distractors seed_offset must be an integer >= 0, got {self.seed_offset!r}"
            )
        if not _is_number(self.alpha) or not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"distractors alpha must be in (0, 1], got {self.alpha!r}")
        if self.floor_alpha is not None and (
            not _is_number(self.floor_alpha) or not 0.0 <= self.floor_alpha <= 1.0
        ):
            raise ValueError(
                f"distractors floor_alpha must be in [0, 1] or None, got {self.floor_alpha!r}"
            )
        if self.num_videos is not None and (not _is_int(self.num_videos) or self.num_videos < 1):
            raise ValueError(
                f"distractors num_videos must be a positive integer or None, "
                f"got {self.num_videos!r}"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float | np.floating) and math.isfinite(value))


def parse_distractors(value: Any) -> DistractorOptions | None:
    """The ``distractors`` option as :class:`DistractorOptions`, or None when it is off.

    Accepts None/False/"none"/"off" (off), a kind (``"moving"``, ``"colors"``), or a mapping of
    :class:`DistractorOptions` fields (a Hydra ``DictConfig`` too); anything else raises.
    """
    if isinstance(value, DistractorOptions):
        return value
    if any(value is off or (isinstance(off, str) and value == off) for off in OFF_VALUES):
        return None
    if isinstance(value, str):
        if value not in KINDS:
            raise ValueError(
                f"distractors must be one of {', '.join(map(repr, (*KINDS, 'none')))} "
                f"or a mapping of options, got {value!r}"
            )
        return DistractorOptions(kind=value)  # type: ignore[arg-type]  # checked just above
    if isinstance(value, Mapping):
        valid = [field.name for field in dataclasses.fields(DistractorOptions)]
        unknown = sorted(set(map(str, value)) - set(valid))
        if unknown:
            raise TypeError(
                f"distractors got unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid options are {', '.join(valid)}"
            )
        return DistractorOptions(**{str(key): item for key, item in value.items()})
    raise TypeError(
        f"distractors must be None, a kind ({', '.join(KINDS)}) or a mapping of options, "
        f"got {type(value).__name__} {value!r}"
    )


def default_floor_alpha(domain: str) -> float:
    """The Distracting Control Suite's ground-plane alpha for ``domain``."""
    return FLOOR_ALPHAS.get(domain, DEFAULT_FLOOR_ALPHA)


def plane_geoms(model: Any) -> np.ndarray:
    """``[ngeom]`` bool: which geoms are planes (floors and grounds) in a MuJoCo model."""
    return np.asarray(model.geom_type) == int(mujoco.mjtGeom.mjGEOM_PLANE)


def background_masks(
    segmentation: np.ndarray, floor_geoms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(sky, floor)`` ``[H, W]`` masks from a ``[H, W, 2]`` (object id, object type) image.

    Sky: pixels of no object. Floor: pixels of a geom marked in ``floor_geoms``. Everything else
    (bodies, sites, walls, props) is foreground."""
    object_id, object_type = segmentation[..., 0], segmentation[..., 1]
    sky = object_id == SEGMENTATION_BACKGROUND
    is_geom = object_type == int(mujoco.mjtObj.mjOBJ_GEOM)
    geom_id = np.where(is_geom, object_id, 0)
    floor = is_geom & floor_geoms[geom_id] if floor_geoms.size else np.zeros_like(sky)
    return sky, floor


@dataclass(frozen=True)
class _Wave:
    direction: np.ndarray  # unit vector in image coordinates
    cycles: float
    speed: float  # image widths per second along direction
    phase: float
    amplitude: np.ndarray  # RGB, in [-0.3, 0.3]


@dataclass(frozen=True)
class _Blob:
    start: np.ndarray  # unfolded position at t = 0 (see _bounce)
    velocity: np.ndarray  # image widths per second
    sigma: float
    colour: np.ndarray  # RGB in [0, 1]


def _bounce(position: np.ndarray) -> np.ndarray:
    """Folds a straight path into [0, 1]: a point that bounces off the image borders."""
    folded = np.mod(position, 2.0)
    return 1.0 - np.abs(folded - 1.0)


def _column(colour: np.ndarray) -> np.ndarray:
    """An RGB vector as a float32 ``[3, 1, 1]`` column, to broadcast over ``[3, H, W]`` images."""
    return colour.astype(np.float32).reshape(3, 1, 1)


class BackgroundVideo:
    """One procedural background: colours (``colors``) or a moving pattern (``moving``) that is a
    function of image coordinates and time, so any frame renders at any size."""

    def __init__(self, kind: str, rng: np.random.Generator) -> None:
        self.kind = kind
        self.sky_colour = rng.uniform(0.0, 1.0, 3)
        self.floor_colour = rng.uniform(0.0, 1.0, 3)
        self._gradient = (rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3))
        angle = rng.uniform(0.0, 2.0 * math.pi)
        self._gradient_direction = np.array([math.cos(angle), math.sin(angle)])
        self._gradient_speed = float(rng.uniform(*_WAVE_SPEED))
        self._waves = []
        for _ in range(_NUM_WAVES):
            angle = rng.uniform(0.0, 2.0 * math.pi)
            self._waves.append(
                _Wave(
                    direction=np.array([math.cos(angle), math.sin(angle)]),
                    cycles=float(rng.uniform(*_WAVE_CYCLES)),
                    speed=float(rng.uniform(*_WAVE_SPEED)),
                    phase=float(rng.uniform(0.0, 2.0 * math.pi)),
                    amplitude=rng.uniform(-0.3, 0.3, 3),
                )
            )
        self._blobs = []
        for _ in range(_NUM_BLOBS):
            angle = rng.uniform(0.0, 2.0 * math.pi)
            speed = rng.uniform(*_BLOB_SPEED)
            self._blobs.append(
                _Blob(
                    start=rng.uniform(0.0, 1.0, 2),
                    velocity=speed * np.array([math.cos(angle), math.sin(angle)]),
                    sigma=float(rng.uniform(*_BLOB_SIGMA)),
                    colour=rng.uniform(0.0, 1.0, 3),
                )
            )

    def frame(self, height: int, width: int, time: float) -> np.ndarray:
        """The ``moving`` background at ``time`` seconds as ``[H, W, 3]`` float32 in [0, 1]."""
        # Pixel centres in image widths: x right, y down, the same scale on both axes. Every term
        # is separable in x and y (sin of a sum, exp of a sum), so only 1-D vectors are
        # transcendental and the image is built from outer products; channels come first, so
        # colours broadcast over whole rows (numpy is slow broadcasting a last axis of 3).
        scale = 1.0 / max(height, width)
        x = (np.arange(width, dtype=np.float64) + 0.5) * scale
        y = (np.arange(height, dtype=np.float64) + 0.5) * scale

        def plane_wave(direction: np.ndarray, cycles: float, shift: float) -> np.ndarray:
            # sin(2π·cycles·(d·p) + shift) = sin(a_x)cos(a_y) + cos(a_x)sin(a_y)
            angle_x = 2.0 * math.pi * cycles * direction[0] * x + shift
            angle_y = 2.0 * math.pi * cycles * direction[1] * y
            wave = np.outer(np.cos(angle_y), np.sin(angle_x))
            wave += np.outer(np.sin(angle_y), np.cos(angle_x))
            return wave.astype(np.float32)

        low, high = self._gradient
        mix = 0.5 + 0.5 * plane_wave(
            self._gradient_direction, 1.0, -2.0 * math.pi * self._gradient_speed * time
        )
        image = _column(low) + mix * _column(high - low)  # [3, H, W]
        for wave in self._waves:
            shift = wave.phase - 2.0 * math.pi * wave.cycles * wave.speed * time
            image += plane_wave(wave.direction, wave.cycles, shift) * _column(wave.amplitude)
        for blob in self._blobs:
            centre = _bounce(blob.start + blob.velocity * time)
            across = np.exp(-0.5 * ((x - centre[0]) / blob.sigma) ** 2)
            down = np.exp(-0.5 * ((y - centre[1]) / blob.sigma) ** 2)
            weight = np.outer(down, across).astype(np.float32)
            image += weight * (_column(blob.colour) - image)
        np.clip(image, 0.0, 1.0, out=image)
        return np.ascontiguousarray(image.transpose(1, 2, 0))


class BackgroundDistractor:
    """Draws each episode's background and composites it into rendered frames.

    Call :meth:`reset` with the episode's reset seed (None continues the stream), then
    :meth:`composite` for every frame with its segmentation masks and simulated time.
    """

    def __init__(self, options: DistractorOptions, *, domain: str) -> None:
        self.options = options
        self.floor_alpha = (
            default_floor_alpha(domain) if options.floor_alpha is None else options.floor_alpha
        )
        self._stream: np.random.Generator | None = None
        self._pool: list[int] = []
        if options.num_videos is not None:
            pool = np.random.SeedSequence([options.seed_offset, _POOL_SALT])
            self._pool = [int(seed) for seed in pool.generate_state(options.num_videos, np.uint64)]
        self.video: BackgroundVideo | None = None
        self.video_index: int | None = None  # which pooled video plays (None without a pool)

    def reset(self, seed: int | None) -> None:
        """Draws a new background: from ``(seed, seed_offset)``, or the stream's next one."""
        if seed is not None:
            if not _is_int(seed) or seed < 0:
                raise ValueError(f"the reset seed must be an integer >= 0, got {seed!r}")
            self._stream = np.random.default_rng(
                [int(seed), self.options.seed_offset, _STREAM_SALT]
            )
        if self._stream is None:
            raise RuntimeError("the first reset of a distractor needs a seed")
        if self._pool:
            self.video_index = int(self._stream.integers(len(self._pool)))
            video_rng = np.random.default_rng(self._pool[self.video_index])
        else:
            video_rng = np.random.default_rng(self._stream.integers(2**63))
        self.video = BackgroundVideo(self.options.kind, video_rng)

    def composite(
        self, frame: np.ndarray, sky: np.ndarray, floor: np.ndarray, time: float
    ) -> np.ndarray:
        """``frame`` (``[H, W, 3]`` uint8) with the background in its sky and floor pixels.

        Returns a new array; foreground pixels are copied unchanged."""
        if self.video is None:
            raise RuntimeError("call reset() before composite()")
        height, width = frame.shape[:2]
        # Weight of the background per pixel: alpha on the sky, 1 - floor_alpha on the floor and
        # exactly 0 elsewhere, so x + 0 * (b - x) leaves foreground pixels bit for bit.
        weight = np.zeros((height, width, 1), np.float32)
        weight[sky] = self.options.alpha
        weight[floor] = 1.0 - self.floor_alpha
        if self.options.kind == "moving":
            background = self.video.frame(height, width, time) * np.float32(255.0)
        else:
            colours = 255.0 * np.stack([self.video.sky_colour, self.video.floor_colour])
            background = colours.astype(np.float32)[floor.astype(np.intp)]
        original = frame.astype(np.float32)
        blended = original + weight * (background - original)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


class SegmentationRenderer(FixedCameraRenderer):
    """Renders one named camera's segmentation: ``[H, W, 2]`` int32 (object id, object type),
    -1 where no object is seen, as dm_control's ``Camera.render(segmentation=True)``."""

    def __init__(self, model: mujoco.MjModel, camera: str, max_size: int) -> None:
        super().__init__(model, camera, max_size)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True
        self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True

    def render(self, data: mujoco.MjData, size: int) -> np.ndarray:
        colours = super().render(data, size).astype(np.int32)
        # MuJoCo colours each geom with its segid + 1 (0: nothing drawn).
        segid = colours[..., 0] + colours[..., 1] * 256 + colours[..., 2] * 65536
        lookup = np.full((self._scene.ngeom + 1, 2), SEGMENTATION_BACKGROUND, dtype=np.int32)
        for index in range(self._scene.ngeom):
            geom = self._scene.geoms[index]
            if geom.segid >= 0:
                lookup[geom.segid + 1] = (geom.objid, geom.objtype)
        return lookup[np.clip(segid, 0, self._scene.ngeom)]
