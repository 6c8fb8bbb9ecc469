"""EpisodicReplay: frame stacks, n-step values, eviction, disk persistence and restore.

Frames encode (episode, step) in their pixel values, so every sampled stack says which
observations it holds; each is compared with what the env's own FrameStack produced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from robotrl.envs.wrappers import FrameStack
from robotrl.replay import AFTER_CHECKPOINT_DIR, EpisodicReplay, episode_filename, load_episode

STACK = 3
GAMMA = 0.99


class CountingEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """3×8×8 frames: channel 0 = step, channels 1-2 = episode id (low/high byte)."""

    observation_space = spaces.Dict(
        {
            "pixels": spaces.Box(0, 255, (3, 8, 8), np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, (2,), np.float32),
        }
    )
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        assert options is not None
        self.episode, self.length = options["episode"], options["length"]
        self.terminate, self.step_count = options["terminate"], 0
        return self._obs(), {}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        reward = reward_of(self.episode, self.step_count)
        self.step_count += 1
        done = self.step_count == self.length
        return self._obs(), reward, done and self.terminate, done and not self.terminate, {}

    def _obs(self) -> dict[str, np.ndarray]:
        frame = np.empty((3, 8, 8), np.uint8)
        frame[0], frame[1], frame[2] = self.step_count, self.episode % 256, self.episode // 256
        proprio = np.array([self.episode, self.step_count], np.float32)
        return {"pixels": frame, "proprio": proprio}


def reward_of(episode: int, step: int) -> float:
    return 1.0 + 0.01 * step + 0.1 * (episode % 7)


class Recorder:
    """Runs episodes through FrameStack into a buffer and remembers every stacked observation."""

    def __init__(self, buffer: EpisodicReplay, constant_reward: float | None = None) -> None:
        self.buffer, self.env = buffer, FrameStack(CountingEnv(), STACK)
        self.obs: dict[int, list[dict[str, np.ndarray]]] = {}
        self.rewards: dict[int, list[float]] = {}
        self.terminated: dict[int, bool] = {}
        self.constant_reward = constant_reward

    def run(self, length: int, terminate: bool = True, finish: bool = True) -> int:
        episode = len(self.obs)
        options = {"episode": episode, "length": length, "terminate": terminate}
        obs, _ = self.env.reset(options=options)
        self.obs[episode], self.rewards[episode] = [obs], []
        self.terminated[episode] = terminate
        self.buffer.start_episode(obs)
        for step in range(length if finish else length - 1):
            action = np.array([episode, step], np.float32)
            obs, reward, terminated, truncated, _ = self.env.step(action)
            reward = self.constant_reward if self.constant_reward is not None else float(reward)
            self.obs[episode].append(obs)
            self.rewards[episode].append(reward)
            self.buffer.add(action, reward, obs, terminated, truncated)
        return episode

    def check(self, batch: dict[str, np.ndarray]) -> list[tuple[int, int]]:
        """Assert every sampled transition against the recording; return its (episode, step)s."""
        nstep, found = self.buffer.nstep, []
        for i in range(len(batch["obs"])):
            step, episode = identify(batch["obs"][i])
            obs, rewards = self.obs[episode], self.rewards[episode]
            length = len(rewards)
            n = min(nstep, length - step)
            np.testing.assert_array_equal(batch["obs"][i], obs[step]["pixels"])
            np.testing.assert_array_equal(batch["next_obs"][i], obs[step + n]["pixels"])
            np.testing.assert_array_equal(batch["proprio"][i], obs[step]["proprio"])
            np.testing.assert_array_equal(batch["next_proprio"][i], obs[step + n]["proprio"])
            np.testing.assert_array_equal(batch["action"][i], [episode, step])
            expected = sum(GAMMA**k * rewards[step + k] for k in range(n))
            assert batch["reward"][i, 0] == pytest.approx(expected, rel=1e-6)
            ends = self.terminated[episode] and step + n == length
            assert batch["discount"][i, 0] == pytest.approx(0.0 if ends else GAMMA**n, rel=1e-6)
            found.append((episode, step))
        return found


def identify(stack: np.ndarray) -> tuple[int, int]:
    """(step, episode) of a stack's newest frame."""
    newest = stack[-3:, 0, 0].astype(int)
    return newest[0], newest[1] + 256 * newest[2]


def make_buffer(capacity: int = 1000, nstep: int = 3, **kwargs: Any) -> EpisodicReplay:
    return EpisodicReplay(
        capacity=capacity, frame_stack=STACK, nstep=nstep, discount=GAMMA, **kwargs
    )


def test_batch_shapes_and_dtypes() -> None:
    recorder = Recorder(make_buffer())
    recorder.run(10)
    batch = recorder.buffer.sample(16)
    assert batch["obs"].shape == batch["next_obs"].shape == (16, 9, 8, 8)
    assert batch["obs"].dtype == batch["next_obs"].dtype == np.uint8
    assert batch["action"].shape == (16, 2) and batch["action"].dtype == np.float32
    for key in ("reward", "discount"):
        assert batch[key].shape == (16, 1) and batch[key].dtype == np.float32
    assert batch["proprio"].shape == batch["next_proprio"].shape == (16, 2)


def test_full_window_nstep_reward_and_discount() -> None:
    recorder = Recorder(make_buffer(nstep=3), constant_reward=1.0)
    recorder.run(20, terminate=False)
    batch = recorder.buffer.sample(500)
    steps = np.array([identify(obs)[0] for obs in batch["obs"]])
    full = steps <= 20 - 3
    assert full.sum() > 100
    np.testing.assert_allclose(batch["reward"][full, 0], 2.9701, rtol=1e-6)
    np.testing.assert_allclose(batch["discount"][full, 0], 0.970299, rtol=1e-6)
    recorder.check(batch)
    assert set(steps) == set(range(20)), "every transition, the last steps too, is sampleable"


def test_stacks_are_framestack_output_with_clamping_at_episode_start() -> None:
    recorder = Recorder(make_buffer(nstep=2))
    recorder.run(12)
    batch = recorder.buffer.sample(400)
    found = recorder.check(batch)
    # Spell out the clamping the recording check relies on: oldest frame first.
    for i, (_, step) in enumerate(found):
        stack_steps = batch["obs"][i, ::3, 0, 0].tolist()
        assert stack_steps == [max(step - 2, 0), max(step - 1, 0), step]
    assert {step for _, step in found} >= {0, 1, 2}


def test_windows_near_the_end_are_shortened_and_stay_in_their_episode() -> None:
    recorder = Recorder(make_buffer(nstep=4))
    for length in (5, 2, 7, 1, 6):
        recorder.run(length, terminate=False)
    batch = recorder.buffer.sample(1000)
    found = recorder.check(batch)
    for i, (episode, step) in enumerate(found):
        next_step, next_episode = identify(batch["next_obs"][i])
        assert next_episode == episode
        assert next_step == min(step + 4, len(recorder.rewards[episode]))
    assert (3, 0) in found  # a one-step episode: window of 1


@pytest.mark.parametrize("terminate", [True, False])
def test_terminated_zeroes_the_discount_truncated_bootstraps(terminate: bool) -> None:
    recorder = Recorder(make_buffer(nstep=3))
    recorder.run(8, terminate=terminate)
    found = recorder.check(batch := recorder.buffer.sample(500))
    by_step = {step: batch["discount"][i, 0] for i, (_, step) in enumerate(found)}
    for step, n in ((4, 3), (5, 3), (6, 2), (7, 1)):
        expected = 0.0 if terminate and step + n == 8 else GAMMA**n
        assert by_step[step] == pytest.approx(expected)


def test_unfinished_episode_is_never_sampled() -> None:
    recorder = Recorder(make_buffer())
    recorder.run(6, finish=False)
    assert len(recorder.buffer) == 0
    with pytest.raises(ValueError, match="no finished episode"):
        recorder.buffer.sample(4)
    recorder.run(5)  # drops the unfinished episode 0
    recorder.run(9, finish=False)
    assert len(recorder.buffer) == 5
    found = recorder.check(recorder.buffer.sample(300))
    assert {episode for episode, _ in found} == {1}


def test_eviction_keeps_newest_episodes_and_sampling_stays_correct_after_wraparound() -> None:
    capacity, max_length, rng = 60, 24, np.random.default_rng(3)
    recorder = Recorder(make_buffer(capacity=capacity, nstep=3))
    lengths = rng.integers(1, max_length + 1, size=80)
    for length in lengths:
        newest = recorder.run(int(length), terminate=bool(rng.integers(2)))
        recorder.check(recorder.buffer.sample(100))
        newest_frames = recorder.buffer.sample(2000)["obs"][:, -3:, 0, 0].astype(int)
        kept = sorted(set(newest_frames[:, 1] + 256 * newest_frames[:, 2]))
        # What remains is a run of the newest episodes, and `len` counts exactly their steps.
        assert kept == list(range(kept[0], newest + 1))
        assert len(recorder.buffer) == sum(lengths[kept[0] : newest + 1])
        frames = sum(lengths[kept[0] : newest + 1] + 1)
        assert frames <= capacity
        # Eviction is not over-eager: at most one episode of waste at the end and one in front.
        if kept[0] > 0:
            assert frames > capacity - 2 * (max_length + 1)
    assert recorder.buffer.num_episodes == 80


def test_wrapping_evicts_the_oldest_episodes_left_at_the_end_of_the_ring() -> None:
    recorder = Recorder(make_buffer(capacity=20, nstep=2))

    def kept() -> set[int]:
        return {episode for episode, _ in recorder.check(recorder.buffer.sample(300))}

    for length in (7, 3, 3, 3):  # slots [0,8) [8,12) [12,16) [16,20): the ring is full
        recorder.run(length)
    recorder.run(7)  # wraps to [0,8), evicting episode 0
    recorder.run(1)  # [8,10) evicts episode 1; episodes 2 and 3 are left ahead of the cursor
    assert kept() == {2, 3, 4, 5} and len(recorder.buffer) == 14
    recorder.run(10)  # 11 frames do not fit in [10,20): wrap, evicting 2 and 3, then 4 and 5
    assert kept() == {6} and len(recorder.buffer) == 10


def test_episode_longer_than_capacity_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="capacity=10"):
        Recorder(make_buffer(capacity=10)).run(10)


def test_reset_stack_must_repeat_the_first_frame() -> None:
    buffer = make_buffer()
    pixels = np.zeros((9, 8, 8), np.uint8)
    pixels[6:] = 7  # zero-padded like gymnasium's FrameStackObservation default
    with pytest.raises(ValueError, match="repeat its first frame"):
        buffer.start_episode({"pixels": pixels})


def test_multi_camera_stacks_per_camera() -> None:
    buffer = EpisodicReplay(capacity=100, frame_stack=2, nstep=1, discount=GAMMA)
    # Two cameras, one channel each: camera v's frame at step t is filled with 10 * t + v.
    frames = [
        np.stack([np.full((1, 4, 4), 10 * t + v, np.uint8) for v in (0, 1)]) for t in range(4)
    ]
    stacked = [np.concatenate([frames[max(t - 1, 0)], frames[t]], axis=1) for t in range(4)]
    buffer.start_episode({"pixels": stacked[0]})
    for t in range(1, 4):
        buffer.add(np.zeros(1), 0.0, {"pixels": stacked[t]}, t == 3, False)
    batch = buffer.sample(50)
    assert batch["obs"].shape == (50, 2, 2, 4, 4)
    for obs, next_obs in zip(batch["obs"], batch["next_obs"], strict=True):
        step = int(obs[0, -1, 0, 0]) // 10
        np.testing.assert_array_equal(obs, stacked[step])
        np.testing.assert_array_equal(next_obs, stacked[step + 1])


def test_episodes_are_written_to_disk_as_they_finish(tmp_path: Path) -> None:
    recorder = Recorder(make_buffer(directory=tmp_path))
    recorder.run(4, finish=False)
    assert list(tmp_path.iterdir()) == []
    recorder.run(5)
    recorder.run(3, terminate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        episode_filename(0, 5),
        episode_filename(1, 3),
    ]
    with np.load(tmp_path / "episode_000000_len5.npz", allow_pickle=False) as data:
        assert data["frames"].shape == (6, 3, 8, 8) and data["frames"].dtype == np.uint8
        assert data["action"].shape == (5, 2) and data["action"].dtype == np.float32
        assert data["reward"].shape == (5,) and data["reward"].dtype == np.float32
        assert data["terminated"].shape == () and bool(data["terminated"])
        np.testing.assert_array_equal(data["proprio"][:, 1], np.arange(6))
    assert recorder.buffer.num_episodes == 2


@pytest.mark.parametrize("capacity", [1000, 40])
def test_restore_reloads_identically(tmp_path: Path, capacity: int) -> None:
    recorder = Recorder(make_buffer(capacity=capacity, directory=tmp_path, seed=5))
    for length in (7, 3, 11, 5, 9, 4, 8):
        recorder.run(length, terminate=length % 2 == 1)
    before = recorder.buffer
    state = json.loads(json.dumps({"episodes": before.num_episodes, "rng": before.rng_state()}))

    after = make_buffer(capacity=capacity, directory=tmp_path, seed=99)
    after.restore(state["episodes"])
    after.set_rng_state(state["rng"])
    assert after.num_episodes == 7 and len(after) == len(before)
    batch_before, batch_after = before.sample(256), after.sample(256)
    assert batch_before.keys() == batch_after.keys()
    for key in batch_before:
        np.testing.assert_array_equal(batch_before[key], batch_after[key], err_msg=key)
    recorder.buffer = after  # keeps adding after the restore, with the same file numbering
    recorder.run(6)
    assert (tmp_path / episode_filename(7, 6)).exists()
    recorder.check(after.sample(300))


def test_restore_moves_later_episode_files_aside(tmp_path: Path) -> None:
    recorder = Recorder(make_buffer(directory=tmp_path))
    for length in (3, 4, 5):
        recorder.run(length)
    checkpoint = recorder.buffer.num_episodes
    recorder.run(6)
    recorder.run(2)
    (tmp_path / ".episode_000005_len9.npz.tmp").write_bytes(b"half-written")

    restored = make_buffer(directory=tmp_path)
    restored.restore(checkpoint)
    assert restored.num_episodes == 3 and len(restored) == 12
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        episode_filename(0, 3),
        episode_filename(1, 4),
        episode_filename(2, 5),
    ]
    assert sorted(p.name for p in (tmp_path / AFTER_CHECKPOINT_DIR).iterdir()) == [
        ".episode_000005_len9.npz.tmp",
        episode_filename(3, 6),
        episode_filename(4, 2),
    ]
    recorder.buffer = restored
    found = recorder.check(restored.sample(200))
    assert {episode for episode, _ in found} == {0, 1, 2}


def test_fresh_buffer_refuses_to_overwrite_episode_files(tmp_path: Path) -> None:
    Recorder(make_buffer(directory=tmp_path)).run(3)
    with pytest.raises(FileExistsError, match="restore"):
        Recorder(make_buffer(directory=tmp_path)).run(3)


def test_missing_episode_file_is_a_clear_error(tmp_path: Path) -> None:
    recorder = Recorder(make_buffer(directory=tmp_path))
    for length in (3, 4, 5):
        recorder.run(length)
    (tmp_path / episode_filename(1, 4)).unlink()
    with pytest.raises(FileNotFoundError, match="episode_000001"):
        make_buffer(directory=tmp_path).restore(3)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong length"])
def test_corrupt_episode_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    recorder = Recorder(make_buffer(directory=tmp_path))
    recorder.run(3)
    recorder.run(20)
    path = tmp_path / episode_filename(1, 20)
    data = path.read_bytes()
    if damage == "wrong length":
        path = path.rename(tmp_path / episode_filename(1, 19))
    else:
        path.write_bytes(b"not an npz file" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{path.name.replace('.', '[.]')} is corrupt"):
        make_buffer(directory=tmp_path).restore(2)


def test_rng_state_round_trips_through_json() -> None:
    recorder = Recorder(make_buffer(seed=1))
    recorder.run(30)
    state = json.loads(json.dumps(recorder.buffer.rng_state()))
    first = recorder.buffer.sample(32)
    assert not np.array_equal(first["obs"], recorder.buffer.sample(32)["obs"])
    recorder.buffer.set_rng_state(state)
    np.testing.assert_array_equal(first["obs"], recorder.buffer.sample(32)["obs"])


# ---------------------------------------------------------------- horizon (TACO) batches
def check_horizon(recorder: Recorder, batch: dict[str, np.ndarray], horizon: int) -> set[Any]:
    """Assert the horizon keys against the recording; return the sampled (episode, step)s."""
    found = recorder.check(batch)  # the n-step keys keep their meaning
    for i, (episode, step) in enumerate(found):
        assert step + horizon <= len(recorder.rewards[episode]), "window crosses the episode end"
        expected_actions = [[episode, step + k] for k in range(horizon)]
        np.testing.assert_array_equal(batch["action_seq"][i], expected_actions)
        expected_rewards = recorder.rewards[episode][step : step + horizon]
        np.testing.assert_array_equal(batch["reward_seq"][i], np.float32(expected_rewards))
        expected_obs = recorder.obs[episode][step + horizon]["pixels"]
        np.testing.assert_array_equal(batch["obs_horizon"][i], expected_obs)
    return set(found)


def test_horizon_batch_holds_the_next_k_steps_of_the_same_episode() -> None:
    horizon, lengths = 3, (5, 2, 7, 1, 3, 6, 4)
    recorder = Recorder(make_buffer(nstep=2))
    for length in lengths:
        recorder.run(length, terminate=length % 2 == 0)
    found: set[Any] = set()
    for _ in range(10):
        batch = recorder.buffer.sample(300, horizon=horizon)
        assert batch["action_seq"].shape == (300, horizon, 2)
        assert batch["reward_seq"].shape == (300, horizon)
        assert batch["obs_horizon"].shape == batch["obs"].shape == (300, 9, 8, 8)
        assert batch["action_seq"].dtype == batch["reward_seq"].dtype == np.float32
        assert batch["obs_horizon"].dtype == np.uint8
        found |= check_horizon(recorder, batch, horizon)
    # Every step with o_{t+K} in its episode is drawn, and no other: episodes of 1 and 2 steps
    # contribute nothing, and the last K steps of each episode are never drawn.
    valid = {(e, t) for e, length in enumerate(lengths) for t in range(length - horizon + 1)}
    assert found == valid


def kept_episodes(recorder: Recorder) -> set[int]:
    """Episodes still in the buffer (seen in a large K=0 batch)."""
    frames = recorder.buffer.sample(1000)["obs"][:, -3:, 0, 0].astype(int)
    return set(frames[:, 1] + 256 * frames[:, 2])


def test_horizon_stays_correct_after_eviction_and_wraparound() -> None:
    rng = np.random.default_rng(7)
    recorder = Recorder(make_buffer(capacity=40, nstep=3))
    for length in rng.integers(1, 15, size=30):
        recorder.run(int(length), terminate=bool(rng.integers(2)))
        recorder.buffer.sample(8)  # fills the horizon-0 cache, which eviction must clear too
        if any(len(recorder.rewards[e]) >= 4 for e in kept_episodes(recorder)):
            check_horizon(recorder, recorder.buffer.sample(200, horizon=4), 4)


def test_horizon_zero_draws_exactly_as_before() -> None:
    lengths = (4, 1, 6, 3)
    recorder = Recorder(make_buffer(seed=11))
    for length in lengths:
        recorder.run(length)
    batch = recorder.buffer.sample(64, horizon=0)
    nstep_keys = {"obs", "action", "reward", "discount", "next_obs", "proprio", "next_proprio"}
    assert set(batch) == nstep_keys
    # The pre-horizon rule: one uniform integer per row over all transitions, in ring order.
    transitions = [(e, t) for e, length in enumerate(lengths) for t in range(length)]
    draws = np.random.default_rng(11).integers(len(transitions), size=64)
    assert recorder.check(batch) == [transitions[i] for i in draws]
    # A horizon batch in between neither changes the keys nor the rule of a later K=0 batch.
    recorder.buffer.sample(16, horizon=2)
    state = recorder.buffer.rng_state()
    default = recorder.buffer.sample(32)
    recorder.buffer.set_rng_state(state)
    explicit = recorder.buffer.sample(32, horizon=0)
    assert default.keys() == explicit.keys()
    for key in default:
        np.testing.assert_array_equal(default[key], explicit[key], err_msg=key)


def test_horizon_longer_than_every_episode_is_a_clear_error() -> None:
    recorder = Recorder(make_buffer())
    recorder.run(1)
    recorder.run(2, terminate=False)
    recorder.buffer.sample(4)
    with pytest.raises(ValueError, match="horizon=3"):
        recorder.buffer.sample(4, horizon=3)
    with pytest.raises(ValueError, match="horizon must be >= 0"):
        recorder.buffer.sample(4, horizon=-1)
    recorder.run(3)  # exactly K steps: only its first step has o_{t+K}
    found = check_horizon(recorder, recorder.buffer.sample(50, horizon=3), 3)
    assert found == {(2, 0)}


def test_concurrent_streams_finish_and_store_their_episodes_independently(tmp_path: Path) -> None:
    """Two interleaved episodes (a vector env's two envs): each is stored whole, when it ends."""
    buffer = make_buffer(nstep=1, directory=tmp_path)
    envs = [FrameStack(CountingEnv(), STACK) for _ in range(2)]
    lengths, obs = {0: 6, 1: 3}, {}
    for stream, env in enumerate(envs):
        options = {"episode": 10 + stream, "length": lengths[stream], "terminate": stream == 0}
        obs[stream], _ = env.reset(options=options)
        buffer.start_episode(obs[stream], stream=stream)
    finished = []
    for step in range(6):
        for stream, env in enumerate(envs):
            if step >= lengths[stream]:
                continue
            action = np.array([10 + stream, step], np.float32)
            obs[stream], reward, terminated, truncated, _ = env.step(action)
            buffer.add(action, float(reward), obs[stream], terminated, truncated, stream=stream)
            if terminated or truncated:
                finished.append((stream, buffer.num_episodes, len(buffer)))
    # Stream 1's shorter episode ends first and becomes episode 0; stream 0's becomes episode 1.
    assert finished == [(1, 1, 3), (0, 2, 9)]
    files = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert files == [episode_filename(0, 3), episode_filename(1, 6)]
    for index, episode_id, length in ((0, 11, 3), (1, 10, 6)):
        episode = load_episode(tmp_path / episode_filename(index, length))
        assert episode["frames"][:, 1, 0, 0].tolist() == [episode_id] * (length + 1)
        assert episode["frames"][:, 0, 0, 0].tolist() == list(range(length + 1))
        assert bool(episode["terminated"]) == (episode_id == 10)
    batch = buffer.sample(200)
    for obs_stack, next_stack in zip(batch["obs"], batch["next_obs"], strict=True):
        (step, episode_id), (next_step, next_id) = identify(obs_stack), identify(next_stack)
        assert next_id == episode_id and next_step == step + 1


def test_add_to_a_stream_that_was_not_started_is_a_clear_error() -> None:
    buffer = make_buffer()
    obs, _ = FrameStack(CountingEnv(), STACK).reset(
        options={"episode": 0, "length": 3, "terminate": True}
    )
    buffer.start_episode(obs)  # stream 0 only
    with pytest.raises(RuntimeError, match=r"start_episode\(stream=1\) before add\(stream=1\)"):
        buffer.add(np.zeros(2, np.float32), 0.0, obs, False, False, stream=1)


def check_sequences(recorder: Recorder, batch: dict[str, np.ndarray], length: int) -> set[Any]:
    """Assert a sequence batch against the recording; return the (episode, first step)s."""
    found = set()
    for i in range(len(batch["obs"])):
        first_step, episode = identify(batch["obs"][i, 0])
        steps = len(recorder.rewards[episode])
        assert first_step + length - 1 <= steps, "window runs past the episode's last observation"
        for t in range(length):
            step = first_step + t
            recorded = recorder.obs[episode][step]
            np.testing.assert_array_equal(batch["obs"][i, t], recorded["pixels"])
            np.testing.assert_array_equal(batch["proprio"][i, t], recorded["proprio"])
            assert batch["is_first"][i, t] == (step == 0)
            ends = recorder.terminated[episode] and step == steps
            assert batch["is_terminal"][i, t] == ends
            if step == 0:
                np.testing.assert_array_equal(batch["prev_action"][i, t], [0, 0])
                assert batch["reward"][i, t] == 0
            else:  # how observation `step` was reached: the action and reward of step - 1
                np.testing.assert_array_equal(batch["prev_action"][i, t], [episode, step - 1])
                assert batch["reward"][i, t] == np.float32(recorder.rewards[episode][step - 1])
        found.add((episode, first_step))
    return found


def test_sequences_are_windows_of_one_episode_in_world_model_convention() -> None:
    length, lengths = 4, (5, 2, 7, 3, 6)
    recorder = Recorder(make_buffer(nstep=2))
    for episode, steps in enumerate(lengths):
        recorder.run(steps, terminate=episode % 2 == 0)
    found: set[Any] = set()
    for _ in range(5):
        batch = recorder.buffer.sample_sequences(200, length)
        assert batch["obs"].shape == (200, length, 9, 8, 8) and batch["obs"].dtype == np.uint8
        assert batch["prev_action"].shape == (200, length, 2)
        assert batch["reward"].shape == batch["is_first"].shape == (200, length)
        assert batch["is_first"].dtype == batch["is_terminal"].dtype == np.bool_
        assert batch["prev_action"].dtype == batch["reward"].dtype == np.float32
        found |= check_sequences(recorder, batch, length)
    # Every window of `length` observations inside an episode (T + 1 observations) is drawn;
    # the 2-step episode (3 observations) has none.
    expected = {(e, s) for e, steps in enumerate(lengths) for s in range(steps + 2 - length)}
    assert found == expected
    assert any(check_sequences(recorder, recorder.buffer.sample_sequences(300, 1), 1))


def test_sequences_stay_correct_after_eviction_and_wraparound() -> None:
    rng = np.random.default_rng(3)
    recorder = Recorder(make_buffer(capacity=40))
    for steps in rng.integers(1, 15, size=30):
        recorder.run(int(steps), terminate=bool(rng.integers(2)))
        recorder.buffer.sample_sequences(4, 1)  # fills a cache that eviction must clear
        if any(len(recorder.rewards[e]) >= 4 for e in kept_episodes(recorder)):
            check_sequences(recorder, recorder.buffer.sample_sequences(100, 5), 5)


def test_sequences_longer_than_every_episode_are_a_clear_error() -> None:
    recorder = Recorder(make_buffer())
    with pytest.raises(ValueError, match="no finished episode"):
        recorder.buffer.sample_sequences(4, 2)
    recorder.run(2)
    with pytest.raises(ValueError, match="longest episode in the buffer has 3 observations"):
        recorder.buffer.sample_sequences(4, 4)
    with pytest.raises(ValueError, match="length must be >= 1"):
        recorder.buffer.sample_sequences(4, 0)
