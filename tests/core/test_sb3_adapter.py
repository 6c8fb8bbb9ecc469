"""The Stable-Baselines3 adapter: SB3's VecEnv API over our env contract, without losing anything.

What matters most is what SB3 learns from: pixels bit-exact and never transposed, and the
truncation/termination split carried by ``TimeLimit.truncated`` and ``terminal_observation``,
which decides whether SB3's replay buffer bootstraps.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import SAC  # pinned in requirements/lock.txt: a missing install fails
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from robotrl.envs.wrappers import FrameStack
from robotrl.integrations.sb3 import RobotrlVecEnv, make_sb3_env
from tests.core.fakes import SIZE, DotEnv

# SB3's checker warns that images under 36x36 need a custom extractor; ours are tiny on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:The minimal resolution for an image")

EPISODE_STEPS = 5  # TimedEnv truncates here
TERMINATE_ABOVE = 0.9  # TimedEnv terminates when the action exceeds this


class TimedEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Truncates after EPISODE_STEPS steps; terminates at once on an action above 0.9.

    Every pixel holds ``10 * episode + step``, so any observation says where it came from.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, (3, 8, 8), np.uint8),
                "proprio": spaces.Box(-np.inf, np.inf, (1,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.render_mode = None
        self.episode = -1
        self.step_count = 0

    def _obs(self) -> dict[str, np.ndarray]:
        pixels = np.full((3, 8, 8), 10 * self.episode + self.step_count, np.uint8)
        return {"pixels": pixels, "proprio": np.array([self.step_count], np.float32)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.episode += 1
        self.step_count = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.step_count += 1
        terminated = bool(action[0] > TERMINATE_ABOVE)
        truncated = self.step_count >= EPISODE_STEPS
        return self._obs(), 1.0, terminated, truncated, {"success": terminated}


class TinyCnn(BaseFeaturesExtractor):
    """A small conv net for 24x24 images (SB3's NatureCNN needs 36x36)."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 32) -> None:
        super().__init__(observation_space, features_dim)
        channels = observation_space.shape[0]
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.LazyLinear(features_dim),
            torch.nn.ReLU(),
        )
        with torch.no_grad():
            self.net(torch.as_tensor(observation_space.sample()[None]).float())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class FlatDictExtractor(BaseFeaturesExtractor):
    """Flattens and concatenates every entry; enough for the 8x8 TimedEnv."""

    def __init__(self, observation_space: spaces.Dict) -> None:
        sizes = [int(np.prod(space.shape)) for space in observation_space.spaces.values()]
        super().__init__(observation_space, sum(sizes))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([entry.flatten(1) for entry in observations.values()], dim=1)


def dot_vec_env(n_envs: int = 2, seed: int = 0, **kwargs: Any) -> RobotrlVecEnv:
    return RobotrlVecEnv(
        [lambda: FrameStack(DotEnv(episode_steps=4), 3) for _ in range(n_envs)],
        seed=seed,
        **kwargs,
    )


def act(value: float, n_envs: int = 1) -> np.ndarray:
    return np.full((n_envs, 1), value, np.float32)


# --- SB3's own checks --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
@pytest.mark.parametrize("make", [DotEnv, lambda: FrameStack(DotEnv(), 3), TimedEnv])
def test_our_envs_pass_sb3_check_env(make):
    check_env(make(), warn=True)


def test_a_sub_env_of_the_adapter_passes_sb3_check_env():
    venv = RobotrlVecEnv([lambda: Monitor(FrameStack(DotEnv(), 3))])
    check_env(venv.envs[0])


@pytest.mark.parametrize("observation", ["pixels", "dict"])
def test_sb3_does_not_wrap_the_adapter_in_vec_transpose_image(observation):
    # SB3's algorithms call _wrap_env on the env they get; channel-last images would be transposed.
    venv = dot_vec_env(observation=observation)
    assert BaseAlgorithm._wrap_env(venv) is venv


def test_pixels_that_sb3_would_read_as_channel_last_are_rejected():
    with pytest.raises(ValueError, match="channel-last"):
        RobotrlVecEnv([lambda: FrameStack(DotEnv(), 9)])  # 27 channels on a 24x24 image


def test_observation_views_follow_the_env_entries():
    assert isinstance(dot_vec_env().observation_space, spaces.Box)
    assert isinstance(dot_vec_env(observation="dict").observation_space, spaces.Dict)
    timed = RobotrlVecEnv([TimedEnv])
    assert set(timed.observation_space.spaces) == {"pixels", "proprio"}
    with pytest.raises(ValueError, match=r"would drop \['proprio'\]"):
        RobotrlVecEnv([TimedEnv], observation="pixels")


def test_each_factory_must_build_its_own_env():
    env = DotEnv()
    with pytest.raises(ValueError, match="same env"):
        RobotrlVecEnv([lambda: env, lambda: env])


# --- the VecEnv API ----------------------------------------------------------------------------


def test_reset_and_step_return_batched_arrays_of_the_declared_dtypes():
    venv = dot_vec_env(n_envs=3)
    obs = venv.reset()
    assert obs.shape == (3, 9, SIZE, SIZE) and obs.dtype == np.uint8
    assert all(venv.observation_space.contains(one) for one in obs)
    venv.step_async(act(0.5, 3))
    obs, rewards, dones, infos = venv.step_wait()
    assert obs.shape == (3, 9, SIZE, SIZE) and obs.dtype == np.uint8
    assert rewards.shape == (3,) and rewards.dtype == np.float32
    assert dones.shape == (3,) and dones.dtype == bool
    assert len(infos) == 3
    assert all(info["is_success"] == info["success"] for info in infos)

    timed = RobotrlVecEnv([TimedEnv, TimedEnv])
    obs = timed.reset()
    assert obs["pixels"].shape == (2, 3, 8, 8) and obs["pixels"].dtype == np.uint8
    assert obs["proprio"].shape == (2, 1) and obs["proprio"].dtype == np.float32


def test_step_wait_without_step_async_is_an_error():
    venv = dot_vec_env()
    venv.reset()
    with pytest.raises(RuntimeError, match="step_async"):
        venv.step_wait()


def test_sub_env_i_is_first_reset_with_seed_plus_i_then_continues_its_generator():
    venv = dot_vec_env(n_envs=2, seed=7)
    first = venv.reset()
    for index in range(2):
        direct, _ = FrameStack(DotEnv(), 3).reset(seed=7 + index)
        np.testing.assert_array_equal(first[index], direct["pixels"])
    assert not np.array_equal(venv.reset(), first)  # no reseeding on later resets
    venv.seed(7)
    np.testing.assert_array_equal(venv.reset(), first)


@pytest.mark.parametrize("n_envs", [1, 3])
def test_pixels_round_trip_bit_exactly_across_episodes(n_envs):
    seed = 3
    venv = dot_vec_env(n_envs=n_envs, seed=seed)
    direct = [FrameStack(DotEnv(episode_steps=4), 3) for _ in range(n_envs)]
    expected = [env.reset(seed=seed + index)[0]["pixels"] for index, env in enumerate(direct)]
    np.testing.assert_array_equal(venv.reset(), np.stack(expected))
    actions = np.random.default_rng(0).uniform(-1, 1, (11, n_envs, 1)).astype(np.float32)
    for step_actions in actions:
        obs, _, dones, infos = venv.step(step_actions)
        for index, env in enumerate(direct):
            pixels, _, terminated, truncated, _ = env.step(step_actions[index])
            assert dones[index] == (terminated or truncated)
            if dones[index]:
                np.testing.assert_array_equal(
                    infos[index]["terminal_observation"], pixels["pixels"]
                )
                pixels, _ = env.reset()
            np.testing.assert_array_equal(obs[index], pixels["pixels"])


def test_attributes_and_methods_reach_the_env_that_defines_them():
    venv = dot_vec_env(n_envs=2)
    assert venv.get_attr("episode_steps") == [4, 4]  # through FrameStack to DotEnv
    assert venv.get_attr("num_frames", indices=1) == [3]
    assert venv.has_attr("episode_steps") and not venv.has_attr("no_such_attribute")
    venv.set_attr("episode_steps", 2, indices=[1])
    assert venv.get_attr("episode_steps") == [4, 2]
    venv.reset()
    venv.step(act(0.0, 2))
    _, _, dones, _ = venv.step(act(0.0, 2))
    assert dones.tolist() == [False, True]  # the inner env read the new value
    (reset_obs, _) = venv.env_method("reset", seed=5, indices=0)[0]
    np.testing.assert_array_equal(
        reset_obs["pixels"], FrameStack(DotEnv(), 3).reset(seed=5)[0]["pixels"]
    )
    assert venv.env_is_wrapped(FrameStack) == [True, True]
    assert venv.env_is_wrapped(Monitor) == [False, False]


def test_render_tiles_the_sub_env_frames():
    venv = RobotrlVecEnv([lambda: DotEnv(render_mode="rgb_array") for _ in range(2)])
    venv.reset()
    images = venv.get_images()
    assert [image.shape for image in images] == [(SIZE, SIZE, 3)] * 2
    assert venv.render().shape == (2 * SIZE, SIZE, 3)
    blind = dot_vec_env()
    with pytest.warns(UserWarning, match="render_mode"):
        assert blind.get_images() == [None, None]


# --- truncation versus termination -------------------------------------------------------------


def test_truncation_is_a_time_limit_and_keeps_the_final_observation():
    venv = RobotrlVecEnv([TimedEnv])
    venv.reset()
    for _ in range(EPISODE_STEPS - 1):
        _, _, dones, infos = venv.step(act(0.0))
        assert not dones[0] and not infos[0]["TimeLimit.truncated"]
        assert "terminal_observation" not in infos[0]
    obs, _, dones, infos = venv.step(act(0.0))
    assert dones[0] and infos[0]["TimeLimit.truncated"]
    final = infos[0]["terminal_observation"]
    assert (final["pixels"] == EPISODE_STEPS).all() and final["proprio"][0] == EPISODE_STEPS
    assert (obs["pixels"][0] == 10).all() and obs["proprio"][0, 0] == 0  # episode 1, step 0


def test_termination_is_not_a_time_limit_even_on_the_last_step():
    venv = RobotrlVecEnv([TimedEnv, TimedEnv])
    venv.reset()
    obs, _, dones, infos = venv.step(np.array([[1.0], [0.0]], np.float32))
    assert dones.tolist() == [True, False]
    assert infos[0]["TimeLimit.truncated"] is False and infos[0]["is_success"] is True
    assert (infos[0]["terminal_observation"]["pixels"] == 1).all()
    assert (obs["pixels"][0] == 10).all() and (obs["pixels"][1] == 1).all()
    for _ in range(EPISODE_STEPS - 2):
        venv.step(act(0.0, 2))
    # env 1 is both terminated and truncated on its fifth step: it terminated, no bootstrap.
    _, _, dones, infos = venv.step(np.array([[0.0], [1.0]], np.float32))
    assert dones.tolist() == [False, True]
    assert infos[1]["TimeLimit.truncated"] is False


def test_sb3_replay_buffer_bootstraps_on_truncation_only():
    """Through SAC's own _store_transition: the stored next obs and the done it learns from."""
    venv = RobotrlVecEnv([TimedEnv])
    model = SAC(
        "MultiInputPolicy",
        venv,
        buffer_size=16,
        policy_kwargs={"net_arch": [8], "features_extractor_class": FlatDictExtractor},
        device="cpu",
    )
    assert model.replay_buffer.handle_timeout_termination
    model._last_obs = venv.reset()

    def store(action: float) -> dict[str, Any]:
        buffer_action = act(action)
        new_obs, rewards, dones, infos = venv.step(buffer_action)
        model._store_transition(model.replay_buffer, buffer_action, new_obs, rewards, dones, infos)
        return infos[0]

    for _ in range(EPISODE_STEPS):
        truncated_info = store(0.0)
    terminated_info = store(1.0)
    truncated_at, terminated_at = EPISODE_STEPS - 1, EPISODE_STEPS
    buffer = model.replay_buffer
    assert buffer.dones[[truncated_at, terminated_at], 0].tolist() == [1.0, 1.0]
    assert buffer.timeouts[[truncated_at, terminated_at], 0].tolist() == [1.0, 0.0]
    # The next observation stored is the episode's last, not the first of the next episode:
    # step 5 of episode 0, then step 1 of episode 1.
    for at, info, (episode, step) in (
        (truncated_at, truncated_info, (0, EPISODE_STEPS)),
        (terminated_at, terminated_info, (1, 1)),
    ):
        assert (buffer.next_observations["pixels"][at, 0] == 10 * episode + step).all()
        assert buffer.next_observations["proprio"][at, 0, 0] == step
        for key in ("pixels", "proprio"):
            np.testing.assert_array_equal(
                buffer.next_observations[key][at, 0], info["terminal_observation"][key]
            )
    samples = buffer._get_samples(np.array([truncated_at, terminated_at]))
    # SAC's target is r + (1 - done) * gamma * V(next_obs): bootstrapped after truncation only.
    assert samples.dones.flatten().tolist() == [0.0, 1.0]


# --- SB3 end to end ----------------------------------------------------------------------------


def test_sb3_sac_learns_through_the_adapter_and_sees_successes():
    venv = dot_vec_env(n_envs=2, seed=0)
    model = SAC(
        "CnnPolicy",
        venv,
        buffer_size=200,
        learning_starts=50,
        batch_size=16,
        policy_kwargs={
            "features_extractor_class": TinyCnn,
            "net_arch": [16],
            "share_features_extractor": False,
        },
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=200)
    assert model.num_timesteps == 200
    assert len(model.ep_success_buffer) > 0  # SB3 read is_success at episode ends


def test_make_sb3_env_builds_seeded_monitored_suite_envs():
    options = {"episode_steps": 3, "proprio": True, "render_size": 32}
    venv = make_sb3_env(
        "builtin", "reach", n_envs=2, seed=11, image_size=32, frame_stack=2, options=options
    )
    assert venv.env_is_wrapped(Monitor) == [True, True]
    assert set(venv.observation_space.spaces) == {"pixels", "proprio"}
    assert BaseAlgorithm._wrap_env(venv) is venv

    from robotrl.envs import make_env

    direct = make_env(
        "builtin", "reach", seed=12, image_size=32, action_repeat=2, frame_stack=2, options=options
    )
    expected, _ = direct.reset(seed=12)
    obs = venv.reset()
    actions = np.random.default_rng(1).uniform(-1, 1, (3, 2, 2)).astype(np.float32)
    for step_actions in actions:
        for key in ("pixels", "proprio"):
            np.testing.assert_array_equal(obs[key][1], expected[key])
        obs, _, dones, infos = venv.step(step_actions)
        expected, *_ = direct.step(step_actions[1])
    assert dones.tolist() == [True, True]
    assert {"episode", "is_success", "terminal_observation"} <= set(infos[1])
    assert infos[1]["TimeLimit.truncated"] is True
    np.testing.assert_array_equal(infos[1]["terminal_observation"]["pixels"], expected["pixels"])
    venv.close()


# --- optional dependency -----------------------------------------------------------------------


def test_importing_the_adapter_without_sb3_says_what_to_install():
    code = (
        "import sys\n"
        "sys.modules['stable_baselines3'] = None\n"
        "import robotrl.integrations\n"  # the package itself never needs SB3
        "try:\n"
        "    import robotrl.integrations.sb3\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "else:\n"
        "    raise SystemExit('imported without SB3')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install stable-baselines3" in result.stdout


def test_no_warnings_from_sb3_on_a_well_formed_adapter():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        venv = dot_vec_env()
        venv.reset()
        venv.step(act(0.0, 2))
