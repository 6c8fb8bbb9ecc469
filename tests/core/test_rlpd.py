"""RLPD: symmetric sampling, the LayerNorm critic ensemble, the TD target, UTD and save/load."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robotrl.agents.rlpd import RLPDAgent, RLPDConfig
from robotrl.replay import EpisodicReplay

OBS_SHAPE = (3, 24, 24)
ACTION_DIM = 2


def small_config(**overrides) -> RLPDConfig:
    values = {"hidden_dim": 16, "feature_dim": 8, "num_qs": 4, "utd": 3, "channels_last": False}
    return RLPDConfig(**(values | overrides))


def make_rlpd(proprio_dim: int = 2, **overrides) -> RLPDAgent:
    return RLPDAgent(
        small_config(**overrides),
        obs_shape=OBS_SHAPE,
        action_dim=ACTION_DIM,
        device="cpu",
        proprio_dim=proprio_dim,
    )


def filled_replay(marker: int, episodes: int = 3, length: int = 6, seed: int = 0) -> EpisodicReplay:
    """Frames all ``marker``, actions ``marker / 100``: tells the sources apart."""
    replay = EpisodicReplay(capacity=200, frame_stack=1, nstep=1, discount=0.9, seed=seed)
    for _ in range(episodes):
        replay.add_episode(
            {
                "frames": np.full((length + 1, *OBS_SHAPE), marker, np.uint8),
                "proprio": np.zeros((length + 1, 2), np.float32),
                "action": np.full((length, ACTION_DIM), marker / 100, np.float32),
                "reward": np.ones(length, np.float32),
                "terminated": np.array(False),
            }
        )
    return replay


def test_batches_are_exactly_half_demo_half_online_in_every_minibatch():
    agent = make_rlpd()
    demos, online = filled_replay(200), filled_replay(10)
    agent.attach_demos(demos)
    batch = agent.sample_batch(online, 8)
    assert len(batch["action"]) == 8 * agent.cfg.utd
    for index in range(agent.cfg.utd):
        part = slice(8 * index, 8 * (index + 1))
        from_demos = batch["obs"][part].reshape(8, -1)[:, 0] == 200
        # the marker in the pixels says where each row came from, independently of is_demo
        assert from_demos.sum() == 4
        np.testing.assert_array_equal(from_demos, batch["is_demo"][part])
    # an odd batch keeps the online half at least as large
    assert agent.sample_batch(online, 5)["is_demo"][:5].sum() == 2


def test_missing_demos_and_mismatched_keys_are_clear_errors():
    agent = make_rlpd()
    with pytest.raises(ValueError, match=r"agent\.demos=DIR"):
        agent.sample_batch(filled_replay(1), 8)
    other = EpisodicReplay(capacity=50, frame_stack=1, nstep=1, discount=0.9)
    other.add_episode(
        {
            "frames": np.zeros((3, *OBS_SHAPE), np.uint8),
            "action": np.zeros((2, ACTION_DIM), np.float32),
            "reward": np.zeros(2, np.float32),
            "terminated": np.array(True),
        }
    )
    agent.attach_demos(other)
    with pytest.raises(ValueError, match="different keys"):
        agent.sample_batch(filled_replay(1), 8)
    with pytest.raises(ValueError, match="num_min_qs"):
        RLPDConfig(num_qs=1, num_min_qs=2)
    with pytest.raises(ValueError, match="utd"):
        RLPDConfig(utd=0)


def test_layernorm_critic_ensemble_shapes_and_independent_members():
    agent = make_rlpd(num_qs=5)
    features = torch.randn(7, agent.encoder.repr_dim + 2)
    qs = agent.critic(features, torch.rand(7, ACTION_DIM))
    assert qs.shape == (5, 7)
    assert len({round(float(q), 5) for q in qs[:, 0].detach()}) == 5  # independently initialised
    kinds = [type(m).__name__ for m in agent.critic.layers]
    assert kinds == [
        "EnsembleLinear",
        "EnsembleLayerNorm",
        "ReLU",
        "EnsembleLinear",
        "EnsembleLayerNorm",
        "ReLU",
        "EnsembleLinear",
    ]
    # member 3 alone, recomputed with plain torch ops from its slice of the ensemble weights
    member = 3
    h = agent.critic.trunks[member][2](
        agent.critic.trunks[member][1](agent.critic.trunks[member][0](features[:, :-2]))
    )
    fusion = agent.critic.fusions[member]
    h = fusion.fusion(h + fusion.state(features[:, -2:]))
    action = torch.rand(7, ACTION_DIM)
    x = torch.cat([h, action], -1)
    layers = agent.critic.layers
    for linear, norm in ((layers[0], layers[1]), (layers[3], layers[4])):
        x = x @ linear.weight[member] + linear.bias[member]
        x = F.layer_norm(x, x.shape[-1:]) * norm.weight[member] + norm.bias[member]
        x = torch.relu(x)
    expected = (x @ layers[6].weight[member] + layers[6].bias[member]).squeeze(-1)
    torch.testing.assert_close(agent.critic(features, action)[member], expected)


def test_target_is_min_over_the_random_two_subset_with_entropy_backup():
    torch.manual_seed(0)
    agent = make_rlpd(num_qs=6)
    features = torch.randn(5, agent.encoder.repr_dim + 2)
    reward, discount = torch.rand(5), torch.tensor([0.99, 0.99, 0.0, 0.99, 0.5])
    torch.manual_seed(3)  # a' ~ π(s'), the same draw td_target makes below
    next_action, log_prob = agent.actor.sample(features)
    all_q = agent.critic_target(features, next_action).detach().numpy()
    # the two members with the highest Q in row 0: their min is above the ensemble's min there
    subset = torch.as_tensor(np.argsort(all_q[:, 0])[-2:].copy())
    torch.manual_seed(3)
    target = agent.td_target(features, reward, discount, subset)
    alpha = agent.cfg.init_temperature
    i, j = subset.tolist()
    expected = reward.numpy() + discount.numpy() * (
        np.minimum(all_q[i], all_q[j]) - alpha * log_prob.detach().numpy()
    )
    np.testing.assert_allclose(target.numpy(), expected, rtol=1e-5, atol=1e-6)
    # not the min over the whole ensemble (the point of the subset)
    full = reward.numpy() + discount.numpy() * (all_q.min(0) - alpha * log_prob.detach().numpy())
    assert target[0].item() > full[0] + 1e-6
    # subsets are random 2-subsets, different across updates
    subsets = set()
    for count in range(20):
        agent.critic_updates = count
        chosen = agent.target_subset().tolist()
        assert len(chosen) == 2 == len(set(chosen)) and all(0 <= i < 6 for i in chosen)
        subsets.add(tuple(sorted(chosen)))
    assert len(subsets) > 3


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    agent = make_rlpd()
    features = torch.randn(4, agent.encoder.repr_dim + 2)
    torch.manual_seed(0)
    action, log_prob = agent.actor.sample(features)
    torch.manual_seed(0)
    mean, std = agent.actor(features)
    u = mean + std * torch.randn_like(mean)
    expected = torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)
    torch.testing.assert_close(log_prob, expected.sum(-1), rtol=1e-4, atol=1e-4)
    assert torch.all(action.abs() < 1)
    assert agent.target_entropy == -ACTION_DIM / 2


def test_utd_sets_the_number_of_critic_updates_and_one_actor_update():
    agent = make_rlpd(utd=4)
    agent.attach_demos(filled_replay(200))
    online = filled_replay(10)
    steps = {"critic": 0, "actor": 0, "temperature": 0}
    for name, optimizer in agent.optimizers.items():
        optimizer.register_step_post_hook(
            lambda *_, name=name: steps.__setitem__(name, steps[name] + 1)
        )
    target_before = copy.deepcopy(agent.critic_target.state_dict())
    agent.update(agent.sample_batch(online, 6), step=0)
    assert steps == {"critic": 4, "actor": 1, "temperature": 1}
    assert agent.critic_updates == 4
    # the target moved by four Polyak steps of tau
    name = "layers.6.bias"
    assert not torch.equal(target_before[name], agent.critic_target.state_dict()[name])
    with pytest.raises(ValueError, match="utd=4"):
        agent.update(online.sample(6), step=0)


def test_temperature_moves_towards_the_target_entropy():
    agent = make_rlpd(lr=1e-2)
    features = torch.randn(64, agent.encoder.repr_dim + 2)
    entropy_before = float(-agent.actor.sample(features)[1].mean())
    alpha = agent.alpha.item()
    agent.update_actor_and_temperature(features)
    # entropy above the target (-1): the temperature must go down
    assert entropy_before > agent.target_entropy and agent.alpha.item() < alpha
    assert math.isclose(math.log(alpha), 0.0)


def test_save_load_reproduces_the_next_update():
    agent = make_rlpd()
    demos, online = filled_replay(200), filled_replay(10)
    agent.attach_demos(demos)
    agent.update(agent.sample_batch(online, 6), step=0)
    state = copy.deepcopy(agent.state_dict())
    batch = agent.sample_batch(online, 6)

    torch.manual_seed(11)
    first = agent.update(batch, step=1)
    weights_first = agent.get_weights()

    clone = make_rlpd()
    clone.load_state_dict(state)
    assert clone.critic_updates == agent.cfg.utd
    torch.manual_seed(11)
    second = clone.update(batch, step=1)
    assert first == second
    for module, params in clone.get_weights().items():
        for key, value in params.items():
            torch.testing.assert_close(value, weights_first[module][key], rtol=0, atol=0)


def test_learns_a_reward_that_depends_on_the_action():
    """A contextual bandit: reward = -|a - target|; the policy mean must move to the target."""
    torch.manual_seed(0)
    agent = make_rlpd(proprio_dim=0, utd=2, lr=3e-3, hidden_dim=32, augment_pad=0)
    target = np.array([0.6, -0.4], np.float32)
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict[str, np.ndarray]:
        action = rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)
        obs = np.full((n, *OBS_SHAPE), 50, np.uint8)
        return {
            "obs": obs,
            "next_obs": obs,
            "action": action,
            "reward": -np.abs(action - target).sum(-1, keepdims=True),
            "discount": np.zeros((n, 1), np.float32),
        }

    for step in range(300):
        agent.update(batch(64), step)
    obs = {"pixels": np.full(OBS_SHAPE, 50, np.uint8)}
    action = agent.act(obs, step=10_000, eval_mode=True)
    assert np.abs(action - target).max() < 0.2, action


def test_robotrl_train_runs_rlpd_with_demos_on_a_sim_task(tmp_path):
    """``robotrl-train agent=rlpd agent.demos=DIR`` end to end on the built-in reach task."""
    from robotrl.demos import collect_demos
    from robotrl.envs import make_env
    from robotrl_sim.builtin.reach import scripted_action

    env = make_env(
        "builtin",
        "reach",
        seed=0,
        image_size=32,
        action_repeat=2,
        frame_stack=3,
        options={"render_mode": None},
    )
    collect_demos(env, scripted_action, episodes=2, directory=tmp_path / "demos", frame_stack=3)
    env.close()
    runs = tmp_path / "runs"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "robotrl-train"),
            "agent=rlpd",
            f"agent.demos={tmp_path / 'demos'}",
            "agent.num_qs=3",
            "agent.utd=2",
            "agent.hidden_dim=32",
            "replay.batch_size=16",
            f"runs_root={runs}",
            "frames=300",
            "seed_frames=200",
            "eval_every_frames=300",
            "eval_episodes=1",
            "checkpoint_every_frames=300",
            "logger.progress_bar=false",
            "logger.tensorboard=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (run_dir,) = (runs / "builtin" / "reach" / "rlpd" / "default").iterdir()  # one seed
    with open(run_dir / "train.csv") as handle:
        header = handle.readline()
    assert "critic_loss" in header and "temperature" in header
