"""warp/cartpole_swingup: real MuJoCo Warp physics and ray-traced rendering on Warp's CPU device.

Kernels compile once per process (and are cached on disk by Warp), so the envs are shared per
module; each test resets what it uses.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from robotrl.envs import UnknownSuiteError
from robotrl.envs import make_batched_env as make_core_batched_env
from robotrl_sim import UnknownTaskError
from robotrl_sim.warp import BatchedFrameStack, BatchedMujocoEnv, make_batched_env
from robotrl_sim.warp.cartpole import swingup_reward

NUM_WORLDS = 8
SIZE = 64


def make(num_worlds: int = NUM_WORLDS, image_size: int = SIZE, **options) -> BatchedMujocoEnv:
    options.setdefault("action_repeat", 1)
    env = make_batched_env(
        "cartpole_swingup", num_worlds=num_worlds, seed=0, image_size=image_size, **options
    )
    assert isinstance(env, BatchedMujocoEnv)
    return env


@pytest.fixture(scope="module")
def env() -> BatchedMujocoEnv:
    env = make(proprio=True)
    yield env
    env.close()


def spread_states(num_worlds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Worlds in clearly different states: carts along the rail, poles at different angles."""
    world = torch.arange(num_worlds, dtype=torch.float32)
    qpos = torch.stack((-1.2 + 2.4 * world / (num_worlds - 1), -2.5 + 5.0 * world / num_worlds), 1)
    qvel = torch.stack((0.5 * torch.cos(world), 2.0 * torch.sin(world)), 1)
    return qpos, qvel


def mujoco_worlds(env: BatchedMujocoEnv) -> list[mujoco.MjData]:
    """One CPU ``MjData`` per world, in the batched worlds' current state."""
    worlds = []
    for qpos, qvel in zip(env.sim.qpos.numpy(), env.sim.qvel.numpy(), strict=True):
        data = mujoco.MjData(env.mj_model)
        data.qpos[:], data.qvel[:] = qpos, qvel
        mujoco.mj_forward(env.mj_model, data)
        worlds.append(data)
    return worlds


def warm_mask(pixels: np.ndarray) -> np.ndarray:
    """Cart and pole pixels ([3, H, W] uint8): the only orange things on a blue/black scene."""
    red, blue = pixels[0].astype(int), pixels[2].astype(int)
    return (red - blue) > 40


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()])


# -- physics ------------------------------------------------------------------------------------


def test_physics_matches_mj_step_for_100_steps_in_different_states(env):
    env.reset(seed=0)
    qpos, qvel = spread_states(NUM_WORLDS)
    env.set_state(qpos, qvel)
    reference = mujoco_worlds(env)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for _ in range(100):
        action = torch.rand(NUM_WORLDS, 1, generator=generator) * 2 - 1
        env.step(action)
        for world, data in enumerate(reference):
            data.ctrl[:] = action[world].numpy()
            mujoco.mj_step(env.mj_model, data)
        expected = np.stack([data.qpos for data in reference])
        worst = max(worst, float(np.abs(env.sim.qpos.numpy() - expected).max()))
    assert worst < 1e-4, worst
    # The worlds really were in different states, and some carts reached the rail's limits.
    final = env.sim.qpos.numpy()
    assert np.unique(final.round(3), axis=0).shape[0] == NUM_WORLDS
    assert np.abs(final[:, 0]).max() > 1.0


def test_reward_is_dm_controls_cartpole_swingup_reward(env):
    suite = pytest.importorskip("dm_control.suite")
    dmc = suite.load("cartpole", "swingup")
    physics, task = dmc.physics, dmc.task
    rng = np.random.default_rng(0)
    states = np.column_stack(
        (
            rng.uniform(-2.5, 2.5, 64),  # cart x
            rng.uniform(-np.pi, np.pi, 64),  # pole angle
            rng.normal(0, 2, 64),  # cart velocity
            rng.normal(0, 4, 64),  # pole angular velocity
            rng.uniform(-1.2, 1.2, 64),  # control (beyond the margin too)
        )
    )
    expected = []
    for x, angle, x_dot, angle_dot, control in states:
        with physics.reset_context():
            physics.data.qpos[:] = (x, angle)
            physics.data.qvel[:] = (x_dot, angle_dot)
            physics.data.ctrl[:] = control
        expected.append(task.get_reward(physics))
    as_tensor = torch.as_tensor(states, dtype=torch.float32)
    ours = swingup_reward(
        cart_position=as_tensor[:, 0],
        pole_cos=torch.cos(as_tensor[:, 1]),
        pole_angular_velocity=as_tensor[:, 3],
        control=as_tensor[:, 4],
    )
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    # Hand-checked corners: upright/centred/still/no control -> 1; hanging down -> 0; and
    # upright at the margins: 1 * (1+0.1)/2 * (4+0)/5 * (1+0.1)/2 = 0.242.
    corners = swingup_reward(
        torch.tensor([0.0, 0.0, 2.0]),
        torch.tensor([1.0, -1.0, 1.0]),
        torch.tensor([0.0, 0.0, 5.0]),
        torch.tensor([0.0, 0.0, 1.0]),
    )
    np.testing.assert_allclose(corners.numpy(), [1.0, 0.0, 0.55 * 0.8 * 0.55], atol=1e-6)


def test_step_reward_is_the_reward_of_the_state_the_step_reached(env):
    env.reset(seed=1)
    qpos, qvel = spread_states(NUM_WORLDS)
    env.set_state(qpos, qvel)
    reference = mujoco_worlds(env)
    action = torch.linspace(-1, 1, NUM_WORLDS).unsqueeze(1)
    _, reward, _, _, _ = env.step(action)
    expected = []
    for world, data in enumerate(reference):
        data.ctrl[:] = action[world].numpy()
        mujoco.mj_step(env.mj_model, data)
        mujoco.mj_kinematics(env.mj_model, data)
        expected.append(
            float(
                swingup_reward(
                    torch.tensor(data.qpos[0]),
                    torch.tensor(data.xmat[2, 8]),
                    torch.tensor(data.qvel[1]),
                    torch.tensor(data.ctrl[0]),
                )
            )
        )
    np.testing.assert_allclose(reward.numpy(), expected, atol=1e-4)


# -- rendering ----------------------------------------------------------------------------------


def test_a_step_renders_the_state_it_reached(env):
    env.reset(seed=0)
    qpos = torch.zeros(NUM_WORLDS, 2)  # every pole upright, an (unstable) equilibrium
    qvel = torch.zeros(NUM_WORLDS, 2)
    qvel[0, 1] = 8.0  # world 0's pole swings fast
    env.set_state(qpos, qvel)
    before = env.observe()["pixels"]
    obs, *_ = env.step(torch.zeros(NUM_WORLDS, 1))
    moved = (obs["pixels"][0] != before[0]).any(dim=0).sum().item()
    assert moved > 5, moved  # the swinging pole's pixels changed in this very step
    assert torch.equal(obs["pixels"][1:], before[1:])  # the still worlds did not
    # And the frame is of the post-step state, not one step behind: re-rendering now agrees.
    assert torch.equal(obs["pixels"], env.observe()["pixels"])


def test_worlds_in_different_states_render_different_images(env):
    qpos, _ = spread_states(NUM_WORLDS)
    qpos[1] = qpos[0]  # two worlds share a state
    env.set_state(qpos)
    pixels = env.observe()["pixels"]
    assert torch.equal(pixels[0], pixels[1])
    flat = pixels[1:].flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(len(flat)) for j in range(i)), (
        "worlds in different states must look different"
    )
    # The cart+pole pixels follow the cart along the rail: left to right as x grows.
    columns = [centroid(warm_mask(image.numpy()))[1] for image in pixels[1:]]
    assert np.all(np.diff(columns) > 0), columns


def test_images_match_mujocos_own_renderer(env):
    try:
        renderer = mujoco.Renderer(env.mj_model, SIZE, SIZE)
    except Exception as error:  # no GL on this machine: nothing to compare against
        pytest.skip(f"mujoco.Renderer unavailable: {error}")
    states = torch.tensor(
        [[-1.0, 0.0], [0.0, 0.6], [0.8, -1.2], [0.3, math.pi], [-0.5, 2.0], [1.2, -0.3]]
        + [[0.0, 0.0]] * (NUM_WORLDS - 6)
    )
    env.set_state(states)
    ours = env.observe()["pixels"].numpy()
    try:
        for world, data in enumerate(mujoco_worlds(env)[:6]):
            renderer.update_scene(data, camera="fixed")
            theirs = renderer.render().transpose(2, 0, 1)
            mask_ours, mask_theirs = warm_mask(ours[world]), warm_mask(theirs)
            # Same objects in the same places (measured: centroids within 0.7 px, areas within
            # 6%); the shading differs (no shadows or specular highlights in ours).
            distance = np.linalg.norm(centroid(mask_ours) - centroid(mask_theirs))
            assert distance < 1.0, (world, distance)
            assert abs(mask_ours.sum() / mask_theirs.sum() - 1) < 0.15, (world, mask_ours.sum())
    finally:
        renderer.close()


def test_same_seed_and_actions_give_identical_frames(env):
    actions = torch.linspace(-1, 1, 6 * NUM_WORLDS).view(6, NUM_WORLDS, 1)

    def rollout(seed) -> tuple[torch.Tensor, torch.Tensor]:
        obs, _ = env.reset(seed=seed)
        frames, start = [obs["pixels"]], env.sim.qpos.clone()
        for action in actions:
            obs, *_ = env.step(action)
            frames.append(obs["pixels"])
        return torch.stack(frames), start

    frames_a, start_a = rollout(7)
    frames_b, start_b = rollout(7)
    _, start_c = rollout(8)
    assert torch.equal(frames_a, frames_b) and torch.equal(start_a, start_b)
    assert not torch.equal(start_a, start_c)  # another seed, other initial states
    # Each world has its own stream: the worlds start in different states.
    assert torch.unique(start_a, dim=0).shape[0] == NUM_WORLDS
    # One seed per world: equal seeds give equal worlds, whatever their index.
    env.reset(seed=[3] * NUM_WORLDS)
    assert (env.sim.qpos == env.sim.qpos[0]).all()
    # Initial states follow DMC's swing-up distribution: hanging down, small noise.
    qpos = start_a.numpy()
    assert np.abs(qpos[:, 0]).max() < 0.05 and np.abs(qpos[:, 1] - np.pi).max() < 0.05


def test_two_cameras_and_depth(env):
    both = make(num_worlds=2, cameras=["fixed", "lookatcart"], depth=True)
    qpos = torch.tensor([[0.0, math.pi], [0.7, 0.4]])
    both.set_state(qpos)
    env.set_state(torch.cat((qpos, torch.zeros(NUM_WORLDS - 2, 2))))
    obs = both.observe()
    assert obs["pixels"].shape == (2, 2, 3, SIZE, SIZE) and obs["pixels"].dtype == torch.uint8
    assert obs["depth"].shape == (2, 2, 1, SIZE, SIZE) and obs["depth"].dtype == torch.float32
    # View 0 is the fixed camera: the same image as the single-camera env's.
    assert torch.equal(obs["pixels"][:, 0], env.observe()["pixels"][:2])
    # Planar depth through the image centre hits the cart's front face: 4 m - 0.15 m.
    centre = obs["depth"][0, 0, 0, SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1]
    np.testing.assert_allclose(centre.numpy(), 3.85, atol=0.01)
    assert both.single_observation_space["pixels"].shape == (2, 3, SIZE, SIZE)
    both.close()


def test_domain_randomisation_changes_looks_per_world_reproducibly():
    def looks(seed: int, episodes: int) -> torch.Tensor:
        randomized = make(
            num_worlds=4,
            image_size=24,
            randomization={"geom_rgb": 0.3, "light_diffuse": 0.3, "camera_pos": 0.2},
        )
        randomized.reset(seed=seed)
        for _ in range(episodes - 1):
            randomized.reset()
        randomized.set_state(torch.zeros(4, 2))  # one state for every world
        return randomized.observe()["pixels"]

    first = looks(seed=0, episodes=1)
    flat = first.flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(4) for j in range(i))
    assert torch.equal(first, looks(seed=0, episodes=1))
    assert not torch.equal(first, looks(seed=0, episodes=2))  # redrawn at every reset


# -- episodes -----------------------------------------------------------------------------------


def test_per_world_resets_never_cross_an_episode_end():
    steps = 5
    stacked = make_batched_env(
        "cartpole_swingup",
        num_worlds=4,
        seed=1,
        image_size=32,
        action_repeat=1,
        frame_stack=2,
        proprio=True,
        time_limit=steps * 0.01,
    )
    assert isinstance(stacked, BatchedFrameStack)
    inner: BatchedMujocoEnv = stacked.env
    obs, _ = stacked.reset(seed=1)
    generator = torch.Generator().manual_seed(1)
    action = lambda: torch.rand(4, 1, generator=generator) * 2 - 1  # noqa: E731
    for _ in range(2):
        obs, *_ = stacked.step(action())
    # Restart worlds 0 and 1 only: from now on the two halves end their episodes apart.
    restart = torch.tensor([True, True, False, False])
    obs, _ = stacked.reset(options={"reset_mask": restart})
    assert torch.equal(obs["pixels"][:2, :3], obs["pixels"][:2, 3:])  # fresh stacks
    ends: dict[int, list[int]] = {}
    for step in range(1, 8):
        reference = mujoco_worlds(inner)
        act = action()
        previous = obs
        obs, _, terminated, truncated, info = stacked.step(act)
        done = info["_final_obs"]
        assert not terminated.any() and torch.equal(done, truncated)
        final = info["final_obs"]
        for world in range(4):
            data = reference[world]
            data.ctrl[:] = act[world].numpy()
            mujoco.mj_step(env_model := inner.mj_model, data)
            mujoco.mj_kinematics(env_model, data)
            reached = [data.qpos[0], data.xmat[2, 8], data.xmat[2, 2], data.qvel[0], data.qvel[1]]
            # final_obs is the state this world's episode reached, simulated on from its state.
            np.testing.assert_allclose(final["proprio"][world].numpy(), reached, atol=1e-4)
            # Its stack continues the episode: previous last frame, then the final frame.
            assert torch.equal(final["pixels"][world, :3], previous["pixels"][world, 3:])
            if done[world]:
                ends.setdefault(world, []).append(step)
                assert int(info["episode_length"][world]) == steps
                # obs is the next episode's first observation: a fresh hanging-down start ...
                assert obs["proprio"][world, 1] < -0.99 and abs(obs["proprio"][world, 0]) < 0.05
                assert not torch.allclose(obs["proprio"][world], final["proprio"][world])
                # ... with a stack of that first frame only.
                assert torch.equal(obs["pixels"][world, :3], obs["pixels"][world, 3:])
            else:
                assert torch.equal(obs["proprio"][world], final["proprio"][world])
                assert torch.equal(obs["pixels"][world], final["pixels"][world])
    # Worlds 2 and 3 ran 2 steps before the partial reset, worlds 0 and 1 restarted then.
    assert ends == {0: [5], 1: [5], 2: [3], 3: [3]}, ends
    stacked.close()


# -- zero copy, options and errors ----------------------------------------------------------------


def test_state_and_actions_share_memory_with_the_warp_arrays(env):
    data = env.mjw_data
    assert env.sim.qpos.data_ptr() == data.qpos.ptr and env.sim.ctrl.data_ptr() == data.ctrl.ptr
    env.reset(seed=0)
    env.step(torch.full((NUM_WORLDS, 1), 0.25))
    # The action reached MuJoCo Warp's ctrl array through the torch view, with no copy back.
    np.testing.assert_allclose(data.ctrl.numpy(), 0.25)
    env.sim.qpos[:, 0] = 0.5  # a write through torch is what Warp sees
    np.testing.assert_allclose(data.qpos.numpy()[:, 0], 0.5)


def test_copy_false_observations_are_the_warp_buffers_themselves():
    aliased = make(num_worlds=2, image_size=16, copy=False, depth=True)
    obs, _ = aliased.reset(seed=0)
    assert obs["pixels"].data_ptr() == aliased.pixel_buffer.ptr
    assert obs["depth"].data_ptr() == aliased.render_context.depth_data.ptr
    pixels_before = obs["pixels"].clone()
    aliased.set_state(torch.tensor([[1.0, 0.5], [-1.0, -0.5]]))
    next_obs, *_ = aliased.step(torch.zeros(2, 1))
    assert next_obs["pixels"].data_ptr() == obs["pixels"].data_ptr()
    assert not torch.equal(obs["pixels"], pixels_before)  # overwritten in place, as documented
    aliased.close()


def test_copied_observations_survive_the_next_step(env):
    obs, _ = env.reset(seed=0)
    kept = obs["pixels"].clone()
    assert obs["pixels"].data_ptr() != env.pixel_buffer.ptr
    env.set_state(*spread_states(NUM_WORLDS))
    env.step(torch.zeros(NUM_WORLDS, 1))
    assert torch.equal(obs["pixels"], kept)


def test_bad_actions_raise_clear_errors(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(8, 1\)"):
        env.step(torch.zeros(NUM_WORLDS, 2))
    with pytest.raises(ValueError, match=r"shape \(8, 1\)"):
        env.step(torch.zeros(NUM_WORLDS))
    nan = torch.zeros(NUM_WORLDS, 1)
    nan[3] = float("nan")
    with pytest.raises(ValueError, match=r"finite; worlds \[3\]"):
        env.step(nan)
    with pytest.raises(ValueError, match="finite"):
        env.step(torch.full((NUM_WORLDS, 1), float("inf")))
    # Out-of-range actions are clipped to the actuator's range, numpy arrays accepted.
    env.step(np.full((NUM_WORLDS, 1), 5.0))
    np.testing.assert_allclose(env.mjw_data.ctrl.numpy(), 1.0)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_worlds": 0}, ValueError, "num_worlds"),
        ({"image_size": 0}, ValueError, "image_size"),
        ({"action_repeat": 0}, ValueError, "action_repeat"),
        ({"frame_stack": 0}, ValueError, "frame_stack"),
        ({"colour": "red"}, TypeError, "unknown option.*'colour'"),
        ({"cameras": ["nope"]}, ValueError, "no camera named 'nope'"),
        ({"device": "tpu"}, ValueError, "Warp has no device 'tpu'"),
        ({"device": "cuda:7"}, ValueError, "Warp has no device 'cuda:7'"),
        ({"time_limit": 0}, ValueError, "time_limit"),
        ({"depth": "yes"}, TypeError, "depth must be a bool"),
        ({"randomization": {"geom_rgb": -1}}, ValueError, "geom_rgb"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    arguments = {"num_worlds": 2, "seed": 0, "image_size": 16, "action_repeat": 1, **options}
    with pytest.raises(error, match=match):
        make_batched_env("cartpole_swingup", **arguments)


def test_bad_tasks_suites_and_reset_options_raise_clear_errors(env):
    with pytest.raises(UnknownTaskError, match="cartpole_swingup"):
        make_batched_env("walker", num_worlds=1, seed=0, image_size=16, action_repeat=1)
    with pytest.raises(UnknownSuiteError, match="No batched environment suite named 'dmc'"):
        make_core_batched_env(
            "dmc", "walker", num_worlds=1, seed=0, image_size=16, action_repeat=1, frame_stack=1
        )
    with pytest.raises(ValueError, match="reset_mask must be a bool array of shape"):
        env.reset(options={"reset_mask": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="unknown option"):
        env.reset(options={"mask": None})
    with pytest.raises(ValueError, match="one per world"):
        env.reset(seed=[1, 2])


def test_the_core_builds_it_through_the_batched_entry_point():
    built = make_core_batched_env(
        "warp",
        "cartpole_swingup",
        num_worlds=3,
        seed=0,
        image_size=16,
        action_repeat=2,
        frame_stack=3,
        options={"proprio": True},
    )
    obs, _ = built.reset(seed=0)
    assert obs["pixels"].shape == (3, 9, 16, 16) and obs["pixels"].dtype == torch.uint8
    assert obs["proprio"].shape == (3, 5) and obs["proprio"].dtype == torch.float32
    assert built.single_observation_space["pixels"].shape == (9, 16, 16)
    assert built.metadata["autoreset_mode"].name == "SAME_STEP"
    obs, reward, terminated, truncated, _ = built.step(torch.zeros(3, 1))
    assert reward.shape == (3,) and reward.dtype == torch.float32
    assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
    assert obs["pixels"].device == built.device
    built.close()
