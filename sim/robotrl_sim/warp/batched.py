"""``BatchedMujocoEnv``: N MuJoCo Warp worlds stepped and ray-traced together, as torch tensors.

See the package docstring (``robotrl_sim.warp``) for the design; this module holds the backend and
the contract a task implements (``WarpTask``).
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from robotrl_sim.warp import _kernels
from robotrl_sim.warp.randomization import DomainRandomization

TensorObs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SimTensors:
    """Torch views, without copies, of the batched MuJoCo Warp state a task reads and writes.

    They alias the Warp arrays (same memory, same device), so they always show the current state.
    """

    qpos: torch.Tensor  # [N, nq]
    qvel: torch.Tensor  # [N, nv]
    ctrl: torch.Tensor  # [N, nu]
    xpos: torch.Tensor  # [N, nbody, 3] body positions (fresh after every physics step)
    xmat: torch.Tensor  # [N, nbody, 3, 3] body orientations
    mocap_pos: torch.Tensor  # [N, nmocap, 3] positions of mocap bodies (e.g. a target)


class WarpTask(ABC):
    """What a task on the batched backend defines; stepping, rendering and resets are shared.

    Every method works on whole batches of torch tensors on the sim's device and must not leave
    it (no ``.item()``, no numpy), so a step never waits on the host.
    """

    xml_path: Path  # the MJCF scene (or override ``build_model``)
    cameras: tuple[str, ...]  # cameras rendered by default, in observation order
    time_limit: float  # seconds of simulated time until an episode is truncated
    reset_noise_size: int  # standard normals drawn per world at each reset
    proprio_size: int  # length of the "proprio" vector
    # Optional, for tasks with their own controller (see ``control``):
    action_size: int | None = None  # None: one action per actuator, mapped onto its ctrlrange
    control_substeps: int = 1  # physics steps per control step (one ``control`` call each)
    contacts: bool = False  # True: contacts of the reached state are found after a control step
    geom_groups: tuple[int, ...] = (0, 1, 2)  # geom groups the cameras see

    def build_model(self) -> mujoco.MjModel:
        """The compiled scene; by default loaded from ``xml_path``."""
        return mujoco.MjModel.from_xml_path(str(self.xml_path))

    def bind(self, data: mjw.Data, device: torch.device) -> None:  # noqa: B027 (optional hook)
        """Called once the worlds exist: a task may keep torch views of ``data``'s arrays
        (``wp.to_torch``) and allocate its per-world state on ``device``."""

    def control(self, sim: SimTensors, action: torch.Tensor) -> torch.Tensor | None:
        """``ctrl [N, nu]`` for the next control step from ``action [N, action_size]`` in
        [-1, 1]; None (the default) maps each action onto its actuator's ctrlrange."""
        return None

    def on_reset(self, sim: SimTensors, mask: torch.Tensor) -> None:  # noqa: B027 (optional hook)
        """Called after the worlds of ``mask [N]`` got their initial state (kinematics fresh)."""

    def after_control_step(self, sim: SimTensors) -> None:  # noqa: B027 (optional hook)
        """Called after each control step's reward (e.g. to track "success so far")."""

    @abstractmethod
    def initial_state(
        self, noise: torch.Tensor, qpos0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(qpos [N, nq], qvel [N, nv])`` of new episodes from ``noise [N, reset_noise_size]``
        standard normals and the model's ``qpos0 [nq]``."""

    @abstractmethod
    def reward(self, sim: SimTensors) -> torch.Tensor:
        """Reward ``[N]`` of the state after one control step (summed over ``action_repeat``)."""

    @abstractmethod
    def proprio(self, sim: SimTensors) -> torch.Tensor:
        """``[N, proprio_size]`` float32 low-dimensional observation."""

    def initial_mocap_pos(
        self, noise: torch.Tensor, mocap_pos0: torch.Tensor
    ) -> torch.Tensor | None:
        """``[N, nmocap, 3]`` mocap body positions of new episodes, from the same ``noise`` as
        ``initial_state`` and the model's ``mocap_pos0 [nmocap, 3]``; None leaves them at
        ``mocap_pos0`` (the default)."""
        return None

    def terminated(self, sim: SimTensors) -> torch.Tensor | None:
        """``[N]`` bool, or None if the task never terminates (only the time limit ends it)."""
        return None

    def success(self, sim: SimTensors) -> torch.Tensor | None:
        """``[N]`` bool reported as ``info["success"]``, or None if the task defines none."""
        return None


@dataclass(frozen=True)
class BatchedEnvOptions:
    """Options of every batched task, passed to ``make_batched_env`` as keywords."""

    cameras: tuple[str, ...] | None = None  # None: the task's cameras
    depth: bool = False  # add "depth": float32 planar depth in metres (0 where a ray hits nothing)
    proprio: bool = False  # add "proprio": the task's float32 state vector
    time_limit: float | None = None  # seconds; None: the task's
    copy: bool = True  # False: obs alias internal buffers, overwritten by the next step
    randomization: DomainRandomization = field(default_factory=DomainRandomization)

    def __post_init__(self) -> None:
        if self.cameras is not None:
            if isinstance(self.cameras, str):
                object.__setattr__(self, "cameras", (self.cameras,))
            cameras = tuple(self.cameras)
            if not cameras or not all(isinstance(name, str) for name in cameras):
                raise ValueError(f"cameras must be a non-empty list of names, got {self.cameras!r}")
            object.__setattr__(self, "cameras", cameras)
        for name in ("depth", "proprio", "copy"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {self.time_limit!r}")
        if isinstance(self.randomization, Mapping):
            object.__setattr__(self, "randomization", DomainRandomization(**self.randomization))
        if not isinstance(self.randomization, DomainRandomization):
            raise TypeError(
                f"randomization must be a dict or DomainRandomization, got {self.randomization!r}"
            )


def warp_device(device: str | torch.device) -> wp.Device:
    """The Warp device for ``device`` ("cpu", "cuda", "cuda:1"), with a clear error if absent."""
    name = str(device)
    try:
        return wp.get_device(name)
    except (RuntimeError, ValueError) as error:
        available = ", ".join(str(d) for d in wp.get_devices())
        raise ValueError(
            f"Warp has no device {name!r} on this machine (available: {available})"
        ) from error


def world_seeds(seed: int | Sequence[int], num_worlds: int) -> np.ndarray:
    """int32 generator seeds of each world: hashed from ``(seed, world)``, or one seed per world."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer | Sequence):
        raise ValueError(f"seed must be an int or a sequence of ints, got {seed!r}")
    if isinstance(seed, int | np.integer):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        per_world = [(int(seed), world) for world in range(num_worlds)]
    else:
        seeds = list(seed)
        if len(seeds) != num_worlds or not all(
            isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 0 for s in seeds
        ):
            raise ValueError(
                f"seed must be an int >= 0 or {num_worlds} ints >= 0 (one per world), got {seed!r}"
            )
        per_world = [(int(s), 0) for s in seeds]
    # SeedSequence mixes (seed, world) so neighbouring seeds give unrelated streams.
    states = [np.random.SeedSequence(key).generate_state(1)[0] for key in per_world]
    return (np.asarray(states, dtype=np.uint32) & 0x7FFFFFFF).astype(np.int32)


class BatchedMujocoEnv(gym.vector.VectorEnv):
    """N worlds of one ``WarpTask`` on one Warp device, observed by MuJoCo Warp's ray tracer.

    ``reset`` and ``step`` return torch tensors on ``self.device``: ``pixels`` uint8
    ``[N, 3, H, W]`` (``[N, V, 3, H, W]`` for V cameras), optional ``depth`` float32
    ``[N, 1, H, W]`` / ``[N, V, 1, H, W]`` and ``proprio`` float32 ``[N, P]``; rewards float32
    ``[N]``; ``terminated``/``truncated`` bool ``[N]``. Autoreset is SAME_STEP: a world whose
    episode ends in a step shows its next episode's first observation in ``obs``, and
    ``info["final_obs"]`` holds the observation the step actually reached, for every world (rows
    of worlds that did not finish equal ``obs``), with ``info["_final_obs"]`` marking the finished
    ones. Finished worlds also report ``info["episode_return"]``/``info["episode_length"]``.
    """

    def __init__(
        self,
        task: WarpTask,
        *,
        num_worlds: int,
        seed: int | Sequence[int],
        image_size: int,
        action_repeat: int,
        device: str | torch.device = "cpu",
        options: BatchedEnvOptions | None = None,
    ) -> None:
        for name, value in (
            ("num_worlds", num_worlds),
            ("image_size", image_size),
            ("action_repeat", action_repeat),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        options = options or BatchedEnvOptions()
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.task = task
        self.options = options
        self.num_envs = int(num_worlds)
        self.image_size = int(image_size)
        self.action_repeat = int(action_repeat)
        self._wp_device = warp_device(device)
        self.device = torch.device(wp.device_to_torch(self._wp_device))
        self.mj_model = task.build_model()
        cameras = options.cameras or task.cameras
        for name in cameras:
            if mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_CAMERA, name) < 0:
                raise ValueError(f"{type(task).__name__}'s scene has no camera named {name!r}")
        self.cameras = tuple(cameras)
        control_dt = self.mj_model.opt.timestep * task.control_substeps * self.action_repeat
        time_limit = options.time_limit or task.time_limit
        self.max_episode_steps = max(1, math.ceil(time_limit / control_dt - 1e-9))
        self._randomization = options.randomization
        with self._on_device():
            self._build(seed)

    # -- construction ------------------------------------------------------------------------

    def _build(self, seed: int | Sequence[int]) -> None:
        n, size, views = self.num_envs, self.image_size, len(self.cameras)
        mjm = self.mj_model
        mjd = mujoco.MjData(mjm)
        mujoco.mj_forward(mjm, mjd)
        batch_sizes = dict.fromkeys(self._randomization.batched_fields(), n)
        self.mjw_model = mjw.put_model(mjm, batch_sizes=batch_sizes)
        self.mjw_data = mjw.put_data(mjm, mjd, nworld=n)
        # Cheap shading: no shadows, textures, specular or emission (none carry task
        # information here); each pixel is one ray against the scene's BVH plus headlight/lights.
        self.render_context = mjw.create_render_context(
            mjm,
            nworld=n,
            cam_res=(size, size),
            render_rgb=True,
            render_depth=self.options.depth,
            cam_active=list(self.cameras),
            enabled_geom_groups=list(self.task.geom_groups),
            use_textures=False,
            use_shadows=False,
            enable_specular=False,
            enable_emission=False,
        )
        rc = self.render_context
        # Our unpacking assumes camera k's pixels start at k*H*W (same size for every camera).
        expected = np.arange(views) * size * size
        if not np.array_equal(rc.rgb_adr.numpy(), expected):
            raise RuntimeError(f"unexpected MuJoCo Warp image layout {rc.rgb_adr.numpy()}")

        d = self.mjw_data
        self.sim = SimTensors(
            qpos=wp.to_torch(d.qpos),
            qvel=wp.to_torch(d.qvel),
            ctrl=wp.to_torch(d.ctrl),
            xpos=wp.to_torch(d.xpos),
            xmat=wp.to_torch(d.xmat),
            mocap_pos=wp.to_torch(d.mocap_pos).view(n, mjm.nmocap, 3),
        )
        self._qpos0 = torch.as_tensor(mjm.qpos0, dtype=torch.float32, device=self.device)
        # mj_resetData puts mocap bodies at their bodies' model positions.
        mocap_bodies = np.flatnonzero(mjm.body_mocapid >= 0)
        mocap_bodies = mocap_bodies[np.argsort(mjm.body_mocapid[mocap_bodies])]
        self._mocap_pos0 = torch.as_tensor(
            mjm.body_pos[mocap_bodies].reshape(mjm.nmocap, 3), dtype=torch.float32
        ).to(self.device)
        ctrl_range = torch.as_tensor(mjm.actuator_ctrlrange, dtype=torch.float32)
        limited = torch.as_tensor(mjm.actuator_ctrllimited, dtype=torch.bool)
        # Unlimited actuators take the action as it is.
        low = torch.where(limited, ctrl_range[:, 0], torch.full_like(ctrl_range[:, 0], -1.0))
        high = torch.where(limited, ctrl_range[:, 1], torch.full_like(ctrl_range[:, 1], 1.0))
        self._ctrl_low = low.to(self.device)
        self._ctrl_half_span = ((high - low) / 2).to(self.device)

        # Observation buffers owned by Warp; torch views of them are what obs hand out.
        self._pixels_wp = wp.zeros((n, views * 3, size, size), dtype=wp.uint8)
        pixels = wp.to_torch(self._pixels_wp).view(n, views, 3, size, size)
        self._pixels = pixels[:, 0] if views == 1 else pixels
        self._depth: torch.Tensor | None = None
        if self.options.depth:
            depth = wp.to_torch(rc.depth_data).view(n, views, 1, size, size)
            self._depth = depth[:, 0] if views == 1 else depth

        # Per-world random streams: seeds, how many resets each world has drawn, and the draws.
        task_noise = self.task.reset_noise_size
        self._noise_wp = wp.zeros(
            (n, max(1, task_noise + self._randomization.noise_size(mjm))), dtype=wp.float32
        )
        self._noise = wp.to_torch(self._noise_wp)
        self._seeds_wp: wp.array = wp.array(world_seeds(seed, n), dtype=wp.int32)
        self._episodes_wp = wp.zeros(n, dtype=wp.int32)
        self._episodes = wp.to_torch(self._episodes_wp)
        self._randomized: dict[str, torch.Tensor] = {}
        self._randomization_defaults: dict[str, torch.Tensor] = {}
        for name in self._randomization.batched_fields():
            self._randomized[name] = wp.to_torch(getattr(self.mjw_model, name))
            default = getattr(mjm, name)
            self._randomization_defaults[name] = torch.as_tensor(
                default, dtype=torch.float32, device=self.device
            )

        self._elapsed = torch.zeros(n, dtype=torch.int32, device=self.device)
        self._episode_return = torch.zeros(n, dtype=torch.float32, device=self.device)
        self._all_worlds = torch.ones(n, dtype=torch.bool, device=self.device)

        self.task.bind(self.mjw_data, self.device)
        self._action_size = self.task.action_size or mjm.nu
        self.single_action_space = spaces.Box(-1.0, 1.0, (self._action_size,), np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        view_shape = (size, size) if views == 1 else (views,)
        image = (3, size, size) if views == 1 else (*view_shape, 3, size, size)
        entries: dict[str, spaces.Space[Any]] = {"pixels": spaces.Box(0, 255, image, np.uint8)}
        if self.options.depth:
            depth_shape = (1, size, size) if views == 1 else (views, 1, size, size)
            entries["depth"] = spaces.Box(0.0, np.inf, depth_shape, np.float32)
        if self.options.proprio:
            entries["proprio"] = spaces.Box(-np.inf, np.inf, (self.task.proprio_size,), np.float32)
        self.single_observation_space = spaces.Dict(entries)
        self.observation_space = batch_space(self.single_observation_space, n)

    @contextlib.contextmanager
    def _on_device(self) -> Iterator[None]:
        """Warp allocations and launches on our device; on CUDA, on torch's current stream, so
        Warp kernels and torch ops on the shared tensors are ordered without host syncs."""
        with wp.ScopedDevice(self._wp_device):
            if self._wp_device.is_cuda:
                stream = wp.stream_from_torch(torch.cuda.current_stream(self.device))
                with wp.ScopedStream(stream):
                    yield
            else:
                yield

    # -- the Gymnasium vector API --------------------------------------------------------------

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[TensorObs, dict[str, Any]]:
        """Starts new episodes in every world, or in those of ``options["reset_mask"]`` ([N] bool).

        ``seed`` (an int, or one int per world) restarts the chosen worlds' random streams; without
        it each world continues its stream, so its next episode differs from the last.
        """
        mask = self._reset_mask(options)
        if seed is not None:
            seeds = torch.as_tensor(world_seeds(seed, self.num_envs), device=self.device)
            world_seed = wp.to_torch(self._seeds_wp)
            world_seed.copy_(torch.where(mask, seeds, world_seed))
            self._episodes.masked_fill_(mask, 0)
        with self._on_device():
            self._reset_worlds(mask)
            obs = self._observe(copy=self.options.copy)
        return obs, {}

    def step(
        self, actions: torch.Tensor | np.ndarray
    ) -> tuple[TensorObs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Applies ``actions`` ([N, A] in [-1, 1], clipped) for ``action_repeat`` control steps
        (of ``task.control_substeps`` physics steps each; one physics step for most tasks)."""
        action = self._check_action(actions)
        sim = self.sim
        task = self.task
        with self._on_device():
            reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
            for _ in range(self.action_repeat):
                ctrl = task.control(sim, action)
                if ctrl is None:
                    ctrl = self._ctrl_low + (action + 1.0) * self._ctrl_half_span
                sim.ctrl.copy_(ctrl)
                for _ in range(task.control_substeps):
                    mjw.step(self.mjw_model, self.mjw_data)
                # mjw.step leaves kinematics at the pre-step positions (as mj_step does); refresh
                # them so rewards and images show the state the step reached.
                mjw.kinematics(self.mjw_model, self.mjw_data)
                if task.contacts:
                    mjw.collision(self.mjw_model, self.mjw_data)
                reward += task.reward(sim)
                task.after_control_step(sim)
            mjw.camlight(self.mjw_model, self.mjw_data)
            self._elapsed += 1
            self._episode_return += reward
            terminated = self.task.terminated(sim)
            if terminated is None:
                terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            truncated = (self._elapsed >= self.max_episode_steps) & ~terminated
            done = terminated | truncated
            info: dict[str, Any] = {}
            success = self.task.success(sim)
            if success is not None:
                info["success"] = success
            # One scalar read per step: only steps that end an episode render twice.
            if bool(done.any()):
                final_obs = self._observe(copy=True)
                info["episode_return"] = self._episode_return.clone()
                info["episode_length"] = self._elapsed.clone()
                self._reset_worlds(done)
                obs = self._observe(copy=self.options.copy)
            else:
                obs = self._observe(copy=self.options.copy)
                final_obs = obs
        info["final_obs"] = final_obs
        info["_final_obs"] = done
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        # Warp frees device memory when the arrays are garbage collected.
        self.render_context = None
        self.mjw_data = None
        self.mjw_model = None

    # -- state access for tests, evaluation and sim-to-real tools --------------------------------

    def set_state(
        self,
        qpos: torch.Tensor,
        qvel: torch.Tensor | None = None,
        *,
        mocap_pos: torch.Tensor | None = None,
    ) -> None:
        """Puts every world at ``qpos [N, nq]`` (and ``qvel [N, nv]``, default zero; and
        ``mocap_pos [N, nmocap, 3]``, default unchanged)."""
        sim = self.sim
        mocap = None
        if mocap_pos is not None:
            mocap = torch.as_tensor(mocap_pos, dtype=torch.float32, device=self.device)
            if mocap.shape != sim.mocap_pos.shape:
                raise ValueError(
                    f"set_state needs mocap_pos {tuple(sim.mocap_pos.shape)}, "
                    f"got {tuple(mocap.shape)}"
                )
        qpos = torch.as_tensor(qpos, dtype=torch.float32, device=self.device)
        qvel_t = (
            torch.zeros_like(sim.qvel)
            if qvel is None
            else torch.as_tensor(qvel, dtype=torch.float32, device=self.device)
        )
        if qpos.shape != sim.qpos.shape or qvel_t.shape != sim.qvel.shape:
            raise ValueError(
                f"set_state needs qpos {tuple(sim.qpos.shape)} and qvel {tuple(sim.qvel.shape)}, "
                f"got {tuple(qpos.shape)} and {tuple(qvel_t.shape)}"
            )
        with self._on_device():
            sim.qpos.copy_(qpos)
            sim.qvel.copy_(qvel_t)
            if mocap is not None:
                sim.mocap_pos.copy_(mocap)
            mjw.kinematics(self.mjw_model, self.mjw_data)
            mjw.camlight(self.mjw_model, self.mjw_data)

    @property
    def pixel_buffer(self) -> wp.array:
        """The Warp-owned uint8 ``[N, V*3, H, W]`` image buffer ``copy=False`` obs alias."""
        return self._pixels_wp

    def observe(self) -> TensorObs:
        """A fresh observation of the current state of every world (new tensors)."""
        with self._on_device():
            return self._observe(copy=True)

    # -- internals ------------------------------------------------------------------------------

    def _reset_mask(self, options: dict[str, Any] | None) -> torch.Tensor:
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"reset got unknown option(s) {sorted(options)}; valid: reset_mask")
        if mask is None:
            return self._all_worlds
        mask = torch.as_tensor(mask, device=self.device)
        if mask.dtype != torch.bool or mask.shape != (self.num_envs,):
            raise ValueError(
                f"reset_mask must be a bool array of shape ({self.num_envs},), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        return mask

    def _check_action(self, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        expected = (self.num_envs, self._action_size)
        action = torch.as_tensor(actions, device=self.device)
        if tuple(action.shape) != expected:
            raise ValueError(f"actions must have shape {expected}, got {tuple(action.shape)}")
        if not (action.is_floating_point() or action.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"actions must be floating point, got {action.dtype}")
        action = action.to(torch.float32)
        # Rejected, not clipped: a NaN control would spread through that world's whole state.
        finite = torch.isfinite(action).all(dim=1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            raise ValueError(f"actions must be finite; worlds {bad} have NaN or Inf")
        return action.clamp(-1.0, 1.0)

    def _reset_worlds(self, mask: torch.Tensor) -> None:
        mask = mask.contiguous()
        mask_wp = wp.from_torch(mask, dtype=wp.bool)
        wp.launch(
            _kernels.standard_normal,
            dim=self._noise_wp.shape,
            inputs=[self._seeds_wp, self._episodes_wp, mask_wp],
            outputs=[self._noise_wp],
        )
        # Clears time, controls, warm starts and applied forces of the masked worlds.
        mjw.reset_data(self.mjw_model, self.mjw_data, mask_wp)
        task_noise = self.task.reset_noise_size
        qpos, qvel = self.task.initial_state(self._noise[:, :task_noise], self._qpos0)
        rows = mask.unsqueeze(1)
        self.sim.qpos.copy_(torch.where(rows, qpos, self.sim.qpos))
        self.sim.qvel.copy_(torch.where(rows, qvel, self.sim.qvel))
        mocap_pos = self.task.initial_mocap_pos(self._noise[:, :task_noise], self._mocap_pos0)
        if mocap_pos is not None:
            self.sim.mocap_pos.copy_(torch.where(rows.unsqueeze(2), mocap_pos, self.sim.mocap_pos))
        if self._randomization.enabled:
            # Φ(z) turns the standard normals into uniform [0, 1) draws; scaled to [-1, 1].
            uniform = 2.0 * torch.special.ndtr(self._noise[:, task_noise:]) - 1.0
            self._randomization.apply(self._randomized, self._randomization_defaults, uniform, mask)
        self._episodes += mask.to(torch.int32)
        self._elapsed.masked_fill_(mask, 0)
        self._episode_return.masked_fill_(mask, 0.0)
        mjw.kinematics(self.mjw_model, self.mjw_data)
        mjw.camlight(self.mjw_model, self.mjw_data)
        self.task.on_reset(self.sim, mask)

    def _observe(self, *, copy: bool) -> TensorObs:
        rc = self.render_context
        mjw.refit_bvh(self.mjw_model, self.mjw_data, rc)
        mjw.render(self.mjw_model, self.mjw_data, rc)
        wp.launch(
            _kernels.unpack_rgb,
            dim=(self.num_envs, len(self.cameras), self.image_size * self.image_size),
            inputs=[rc.rgb_data],
            outputs=[self._pixels_wp],
        )
        obs = {"pixels": self._pixels.clone() if copy else self._pixels}
        if self._depth is not None:
            obs["depth"] = self._depth.clone() if copy else self._depth
        if self.options.proprio:
            obs["proprio"] = self.task.proprio(self.sim).to(torch.float32)
        return obs
