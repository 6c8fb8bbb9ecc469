"""The reward-source wrapper: replace/add, potential shaping, normalisation, checkpoints."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from robotrl.envs.wrappers import FrameStack
from robotrl.rewards.base import RewardModel, RunningMeanStd
from robotrl.rewards.wrappers import RewardWrapper, find_reward_wrapper


class WalkEnv(gym.Env):
    """A random walk drawn into its pixels; ends by termination (probability ``p_end`` per step)
    or truncation after ``max_steps``. Reward = the drawn value / 255; success when it is > 200."""

    def __init__(self, p_end: float = 0.0, max_steps: int = 20, proprio: bool = True) -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (3, 8, 8), np.uint8),
                **(
                    {"proprio": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)}
                    if proprio
                    else {}
                ),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.p_end, self.max_steps, self.proprio = p_end, max_steps, proprio

    def _obs(self):
        pixels = self.np_random.integers(0, 256, (3, 8, 8), dtype=np.uint8)
        pixels[0, 0, 0] = self.value
        obs = {"pixels": pixels}
        if self.proprio:
            obs["proprio"] = np.array([self.value / 255.0, self.t], np.float32)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.value, self.t = int(self.np_random.integers(0, 256)), 0
        return self._obs(), {"success": self.value > 200}

    def step(self, action):
        self.t += 1
        self.value = int(np.clip(self.value + self.np_random.integers(-40, 41), 0, 255))
        terminated = bool(self.np_random.random() < self.p_end)
        truncated = not terminated and self.t >= self.max_steps
        info = {"success": self.value > 200}
        return self._obs(), self.value / 255.0, terminated, truncated, info


class ArbitraryPotential(RewardModel):
    """A nonlinear function of a pixel and of proprio; success when the pixel is > 128."""

    def score(self, frames, proprio=None, instruction=None):
        pixel = frames[:, 0, 0, 0].double() / 255.0
        extra = 0.0 if proprio is None else torch.cos(3.0 * proprio[:, 1].double())
        return (torch.sin(7.0 * pixel) * 2.0 + pixel**2 + extra).float()

    def is_success(self, scores):
        return scores > 1.5


def potential(obs) -> float:
    """Φ of an observation, computed here independently of the model class."""
    pixel = obs["pixels"][-3, 0, 0] / 255.0 if obs["pixels"].ndim == 3 else None
    assert pixel is not None
    extra = math.cos(3.0 * float(np.float32(obs["proprio"][1]))) if "proprio" in obs else 0.0
    return float(np.float32(math.sin(7.0 * pixel) * 2.0 + pixel**2 + extra))


@pytest.mark.parametrize("p_end", [0.0, 0.08])  # all truncated / most terminated
@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_potential_shaping_telescopes(p_end, gamma):
    """Σ_t γ^t F_t = γ^T Φ(o_T) − Φ(o_0), with Φ(o_T) = 0 after a termination."""
    env = RewardWrapper(
        FrameStack(WalkEnv(p_end=p_end, max_steps=25), 2),
        ArbitraryPotential(),
        mode="add",
        as_potential=True,
        discount=gamma,
    )
    endings = {"terminated": 0, "truncated": 0}
    for episode in range(30):
        obs, _ = env.reset(seed=episode)
        first = potential(obs)
        shaped_sum, t, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            shaping = float(reward) - info["env_reward"]  # mode=add: r' = r + F
            assert shaping == pytest.approx(info["proxy_reward"], abs=1e-12)
            shaped_sum += gamma**t * shaping
            t += 1
            done = terminated or truncated
        last = 0.0 if terminated else potential(obs)
        endings["terminated" if terminated else "truncated"] += 1
        assert shaped_sum == pytest.approx(gamma**t * last - first, abs=1e-5)
    if p_end > 0:
        assert endings["terminated"] > 10 and endings["truncated"] > 0
    else:
        assert endings == {"terminated": 0, "truncated": 30}


def test_termination_uses_zero_potential_but_truncation_keeps_it():
    """The two endings give different last rewards from the same last observation."""
    model = ArbitraryPotential()
    rewards = {}
    for ending, p_end in (("terminated", 1.0), ("truncated", 0.0)):
        env = RewardWrapper(
            WalkEnv(p_end=p_end, max_steps=1), model, as_potential=True, discount=0.5
        )
        obs0, _ = env.reset(seed=3)
        obs1, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        assert (terminated, truncated) == ((True, False) if p_end else (False, True))
        phi0, phi1 = (
            float(
                model.score(
                    torch.as_tensor(obs0["pixels"][None]), torch.as_tensor(obs0["proprio"][None])
                )
            ),
            float(
                model.score(
                    torch.as_tensor(obs1["pixels"][None]), torch.as_tensor(obs1["proprio"][None])
                )
            ),
        )
        rewards[ending] = (float(reward), phi0, phi1)
    reward, phi0, _ = rewards["terminated"]
    assert reward == pytest.approx(-phi0, abs=1e-6)
    reward, phi0, phi1 = rewards["truncated"]
    assert reward == pytest.approx(0.5 * phi1 - phi0, abs=1e-6)


def test_replace_and_add_modes_keep_the_env_reward_in_info():
    model = ArbitraryPotential()
    for mode in ("replace", "add"):
        env = RewardWrapper(WalkEnv(), model, mode=mode, weight=0.5)
        env.reset(seed=0)
        obs, reward, _, _, info = env.step(np.zeros(1, np.float32))
        score = float(
            model.score(torch.as_tensor(obs["pixels"][None]), torch.as_tensor(obs["proprio"][None]))
        )
        assert info["env_reward"] == pytest.approx(obs["pixels"][0, 0, 0] / 255.0)
        assert info["reward_model_score"] == pytest.approx(score)
        expected = 0.5 * score + (info["env_reward"] if mode == "add" else 0.0)
        assert float(reward) == pytest.approx(expected, abs=1e-6)
        assert info["success"] == (obs["pixels"][0, 0, 0] > 200)  # the env's own success


def test_terminate_on_success_and_episode_totals():
    env = RewardWrapper(WalkEnv(max_steps=200), ArbitraryPotential(), terminate_on_success=True)
    env.reset(seed=1)
    proxy, true, steps, terminated, truncated = 0.0, 0.0, 0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
        proxy, true, steps = proxy + float(reward), true + info["env_reward"], steps + 1
    assert terminated and info["reward_model_success"] and info["reward_model_score"] > 1.5
    (episode,) = env.finished_episodes
    assert episode.length == steps
    assert episode.proxy_return == pytest.approx(proxy) and episode.env_return == pytest.approx(
        true
    )
    assert episode.success == float(info["success"])
    assert find_reward_wrapper(gym.wrappers.PassiveEnvChecker(env)) is env
    assert find_reward_wrapper(WalkEnv()) is None


@pytest.mark.parametrize("as_potential", [False, True])
def test_success_reward_takes_over_where_the_model_says_success(as_potential):
    """KAGI: the sparse success reward where the model judges success, the dense term elsewhere
    (computed here from Φ independently of the wrapper)."""
    env = RewardWrapper(
        FrameStack(WalkEnv(max_steps=60), 2),
        ArbitraryPotential(),
        weight=0.5,
        as_potential=as_potential,
        discount=0.9,
        success_reward=3.0,
    )
    obs, _ = env.reset(seed=3)
    before, seen, done = potential(obs), set(), False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        after = potential(obs)
        dense = 0.5 * ((0.9 * after - before) if as_potential else after)
        success = after > 1.5
        assert info["reward_model_success"] == success
        assert float(reward) == pytest.approx(3.0 if success else dense, abs=1e-5)
        seen.add(success)
        before, done = after, terminated or truncated
    assert seen == {False, True}  # both branches were exercised


def test_success_reward_needs_a_model_that_judges_success():
    class NoJudge(RewardModel):
        def score(self, frames, proprio=None, instruction=None):
            return frames.float().mean(dim=(1, 2, 3))

    with pytest.raises(ValueError, match="success_reward needs a reward model that judges"):
        RewardWrapper(WalkEnv(), NoJudge(), success_reward=1.0)


def test_running_mean_std_matches_numpy_and_round_trips():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, size=1000)
    stats = RunningMeanStd()
    for chunk in np.array_split(values, 37):
        stats.update(chunk)
    assert stats.mean == pytest.approx(values.mean(), abs=1e-10)
    assert stats.var == pytest.approx(values.var(), abs=1e-10)
    copy = RunningMeanStd()
    copy.load_state_dict(stats.state_dict())
    assert copy == stats


def test_normalisation_and_clipping_with_saved_statistics():
    env = RewardWrapper(WalkEnv(max_steps=50), ArbitraryPotential(), normalize=True, clip=1.0)
    scores, rewards = [], []
    for episode in range(4):
        env.reset(seed=episode)
        done = False
        while not done:
            _, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
            scores.append(info["reward_model_score"])
            rewards.append(float(reward))
            done = terminated or truncated
    state = env.state_dict()
    assert state["stats"]["count"] == len(scores)  # resets are not scored outside potentials
    assert state["stats"]["mean"] == pytest.approx(np.mean(scores), abs=1e-9)
    # The last reward is the last score standardised with the statistics including it, clipped.
    last = (scores[-1] - np.mean(scores)) / np.sqrt(np.var(scores) + 1e-8)
    assert rewards[-1] == pytest.approx(float(np.clip(last, -1, 1)), abs=1e-6)
    assert max(abs(r) for r in rewards) <= 1.0 and np.std(rewards) > 0.1
    restored = RewardWrapper(WalkEnv(), ArbitraryPotential(), normalize=True, clip=1.0)
    restored.load_state_dict(state)
    assert restored.stats == env.stats
    assert restored.transform(scores[-1]) == pytest.approx(env.transform(scores[-1]))


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        RewardWrapper(WalkEnv(), ArbitraryPotential(), mode="multiply")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="discount"):
        RewardWrapper(WalkEnv(), ArbitraryPotential(), discount=1.5)
