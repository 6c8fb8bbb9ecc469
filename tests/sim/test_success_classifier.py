"""The learned success classifier on frames of ``builtin/reach`` (32x32, CPU, well under a
minute): positives (ball on the disc), near-misses (ball just off it) and far negatives are
placed by a scripted controller; labels come from the true distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robotrl.envs import make_env
from robotrl.rewards.classifier import LabelledFrames, SuccessClassifier
from robotrl.rewards.config import RewardConfig, wrap_with_reward

pytest.importorskip("robotrl_sim")
from robotrl_sim.builtin.reach import TARGET_RADIUS

# Near-misses: the ball's centre 1.5-4.5 cm outside the success radius (0.75-2 pixels at 32x32
# over the ~0.7 m view); positives at most 1 cm inside it.
POSITIVE = (0.0, TARGET_RADIUS - 0.01)
NEAR_MISS = (TARGET_RADIUS + 0.015, TARGET_RADIUS + 0.045)


def reach_env(seed: int = 0):
    return make_env(
        "builtin",
        "reach",
        seed=seed,
        image_size=32,
        action_repeat=1,
        frame_stack=1,
        options={"render_mode": None, "episode_steps": 10_000},
    )


def labelled_reach_frames(count: int, seed: int) -> LabelledFrames:
    """``count`` frames, a third of each kind, by steering the ball to a chosen offset from the
    target; the kind is decided by the distance actually reached."""
    env = reach_env(seed)
    reach = env.unwrapped
    rng = np.random.default_rng(seed)
    frames, kinds = [], []
    obs, _ = env.reset(seed=seed)
    for index in range(count):
        if index % 6 == 0:
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        wanted = index % 3
        if wanted == 2:  # anywhere in the arena
            goal = rng.uniform(-0.22, 0.22, size=2)
        else:
            low, high = POSITIVE if wanted == 0 else NEAR_MISS
            angle = rng.uniform(0, 2 * np.pi)
            radius = rng.uniform(low, high)
            goal = reach.target_position + radius * np.array([np.cos(angle), np.sin(angle)])
        for _ in range(20):  # full action moves 2.5 cm per 0.05 s step; the ball settles
            action = np.clip((goal - reach.agent_position) / 0.025, -1, 1).astype(np.float32)
            obs, *_ = env.step(action)
        distance = float(np.linalg.norm(reach.agent_position - reach.target_position))
        if distance <= TARGET_RADIUS:
            kind = "positive"
        elif distance <= NEAR_MISS[1] + 0.01:
            kind = "near_miss"
        else:
            kind = "negative"
        frames.append(obs["pixels"])
        kinds.append(kind)
    env.close()
    return LabelledFrames(np.stack(frames), np.array(kinds))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    data = labelled_reach_frames(720, seed=0)
    train, validation, test = data.split((0.6, 0.2), seed=0)
    classifier = SuccessClassifier.fit(train, validation, target_fpr=0.02, steps=500, seed=0)
    return classifier, test, data


def test_held_out_fpr_on_near_misses_and_recall(trained):
    classifier, test, data = trained
    counts = {
        kind: int((data.kinds == kind).sum()) for kind in ("positive", "near_miss", "negative")
    }
    assert min(counts.values()) > 150, counts  # the script placed all three kinds
    metrics = classifier.report(test)
    print(counts, {name: round(value, 3) for name, value in metrics.items()})
    assert (test.kinds == "near_miss").sum() >= 40
    assert metrics["near_miss_fpr"] <= 0.05
    assert metrics["fpr"] <= 0.05
    assert metrics["recall"] >= 0.90


def test_save_load_round_trip_and_terminal_reward(trained, tmp_path):
    classifier, test, _ = trained
    classifier.save(tmp_path / "clf")
    loaded = SuccessClassifier.load(tmp_path / "clf")
    assert loaded.config.threshold == classifier.config.threshold
    torch.testing.assert_close(
        loaded.probability(test.frames), classifier.probability(test.frames), atol=0, rtol=0
    )
    # As the reward of the reach task: 0 until the classifier sees success, then 1 and the end.
    cfg = RewardConfig(
        kind="success_classifier",
        terminate_on_success=True,
        options={"path": str(tmp_path / "clf")},
    )
    env = wrap_with_reward(reach_env(seed=5), cfg)
    reach = env.unwrapped
    env.reset(seed=5)
    rewards, terminated, info = [], False, {}
    for _ in range(60):
        action = np.clip((reach.target_position - reach.agent_position) / 0.025, -1, 1)
        _, reward, terminated, truncated, info = env.step(action.astype(np.float32))
        rewards.append(float(reward))
        if terminated or truncated:
            break
    assert terminated and rewards[-1] == 1.0 and set(rewards[:-1]) <= {0.0}
    assert info["success"]  # the env agrees: the ball is on the disc
    assert len(rewards) > 1


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"classifier\.safetensors"):
        SuccessClassifier.load(tmp_path)
