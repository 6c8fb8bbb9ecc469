"""Diffusion Policy (robotrl.agents.diffusion_policy): the squared-cosine schedule, forward noising
and the DDIM/DDPM steps against NumPy, recovery of x0 with an oracle noise predictor, overfitting
a batch, bc_chunk's inference modes on sampled chunks, reproducible acting noise, checkpoints,
and residual agents (off-policy and PPO) that start exactly at a diffusion base. Tiny images and
networks; no simulator."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from robotrl.agents import agent_class, class_path
from robotrl.agents.diffusion_policy import (
    DiffusionPolicyAgent,
    DiffusionPolicyConfig,
    NoiseSchedule,
    sample_chunks,
)
from robotrl.agents.ppo import PPOAgent, PPOConfig
from robotrl.agents.residual import ResidualAgent, ResidualConfig, load_base_policy
from robotrl.checkpoint import load_checkpoint, save_checkpoint
from robotrl.replay import EpisodicReplay

OBS_SHAPE = (9, 24, 24)  # 3 stacked RGB frames
ACTION_DIM = 2
T = 100


def numpy_alphas_cumprod(steps: int) -> np.ndarray:
    """Nichol & Dhariwal's squared-cosine ᾱ, betas capped at 0.999, written independently."""
    s = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], 0.999)
    return np.cumprod(1.0 - betas)


def dp_agent(proprio_dim: int = 0, **overrides) -> DiffusionPolicyAgent:
    options = {"chunk_size": 4, "hidden_dim": 32, "feature_dim": 16, "num_blocks": 2} | overrides
    cfg = DiffusionPolicyConfig(**options)
    return DiffusionPolicyAgent(
        cfg, obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu", proprio_dim=proprio_dim
    )


def observations(count: int, seed: int = 0, proprio: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {"pixels": rng.integers(0, 256, (count, *OBS_SHAPE), dtype=np.uint8)}
    if proprio:
        obs["proprio"] = rng.normal(size=(count, proprio)).astype(np.float32)
    return obs


def fixed_batch(size: int = 16, seed: int = 0, proprio: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {
        "obs": rng.integers(0, 256, (size, *OBS_SHAPE), dtype=np.uint8),
        "action_seq": rng.uniform(-0.9, 0.9, (size, 4, ACTION_DIM)).astype(np.float32),
    }
    if proprio:
        batch["proprio"] = rng.normal(size=(size, proprio)).astype(np.float32)
    return batch


# -- the schedule and the steps against NumPy --------------------------------------------------


def test_squared_cosine_schedule_matches_numpy():
    schedule = NoiseSchedule(T)
    expected = numpy_alphas_cumprod(T)
    np.testing.assert_allclose(schedule.alphas_cumprod, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(schedule._signal.numpy() ** 2, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(schedule._spread.numpy() ** 2, 1 - expected, rtol=0, atol=1e-6)
    assert 0.999 < expected[0] < 1.0 and expected[-1] < 1e-6 and np.all(np.diff(expected) < 0)
    assert schedule.betas.max() == pytest.approx(0.999)  # the cap, at the last step
    # Another length, and the agent's own schedule.
    np.testing.assert_allclose(
        NoiseSchedule(37).alphas_cumprod, numpy_alphas_cumprod(37), atol=1e-6
    )
    agent = dp_agent(num_train_timesteps=50, inference_steps=5)
    np.testing.assert_allclose(agent.schedule.alphas_cumprod, numpy_alphas_cumprod(50), atol=1e-6)


def test_forward_noising_matches_numpy():
    schedule, ac = NoiseSchedule(T), numpy_alphas_cumprod(T)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (6, 4, 2)).astype(np.float32)
    noise = rng.normal(size=(6, 4, 2)).astype(np.float32)
    timesteps = np.array([0, 1, 17, 50, 98, 99])
    noisy = schedule.add_noise(
        torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(timesteps)
    )
    a = ac[timesteps][:, None, None]
    expected = np.sqrt(a) * x0 + np.sqrt(1.0 - a) * noise
    assert noisy.dtype == torch.float32
    np.testing.assert_allclose(noisy.numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize(("t", "t_prev"), [(99, 89), (50, 30), (9, -1), (0, -1)])
def test_ddim_step_with_eta_zero_matches_numpy(clip, t, t_prev):
    schedule, ac = NoiseSchedule(T), numpy_alphas_cumprod(T)
    rng = np.random.default_rng(t)
    x = rng.normal(size=(5, 4, 2)).astype(np.float32)
    eps = rng.normal(size=(5, 4, 2)).astype(np.float32)
    out = schedule.ddim_step(torch.from_numpy(x), torch.from_numpy(eps), t, t_prev, clip)
    a_t, a_prev = ac[t], (1.0 if t_prev < 0 else ac[t_prev])
    x0 = (x.astype(np.float64) - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    if clip:
        x0 = np.clip(x0, -1, 1)
    expected = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(x0).max())


@pytest.mark.parametrize("t", [99, 40, 1, 0])
def test_ddpm_step_matches_numpy(t):
    schedule, ac = NoiseSchedule(T), numpy_alphas_cumprod(T)
    rng = np.random.default_rng(t)
    x, eps, z = (rng.normal(size=(5, 4, 2)).astype(np.float32) for _ in range(3))
    out = schedule.ddpm_step(
        torch.from_numpy(x), torch.from_numpy(eps), t, torch.from_numpy(z), clip=True
    )
    a_t, a_prev = ac[t], (ac[t - 1] if t > 0 else 1.0)
    beta = 1 - a_t / a_prev
    x0 = np.clip((x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t), -1, 1)
    mean = (np.sqrt(a_prev) * beta * x0 + np.sqrt(1 - beta) * (1 - a_prev) * x) / (1 - a_t)
    sigma = np.sqrt((1 - a_prev) / (1 - a_t) * beta) if t > 0 else 0.0
    np.testing.assert_allclose(out.numpy(), mean + sigma * z, rtol=1e-5, atol=1e-5)


def test_inference_timesteps_are_evenly_spaced_from_the_noisiest():
    schedule = NoiseSchedule(T)
    assert schedule.inference_timesteps(10) == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]
    assert schedule.inference_timesteps(T) == list(range(99, -1, -1))
    assert schedule.inference_timesteps(3) == [99, 65, 32]
    assert schedule.inference_timesteps(1) == [99]
    with pytest.raises(ValueError, match="steps must be in"):
        schedule.inference_timesteps(101)


# -- sampling with an oracle ---------------------------------------------------------------------


@pytest.mark.parametrize("steps", [T, 10, 4, 1])
@pytest.mark.parametrize("clip", [True, False])
def test_sampler_recovers_x0_with_an_oracle_noise_predictor(steps, clip):
    """ε̂(x_k, k) = (x_k − √ᾱ_k x0) / √(1 − ᾱ_k) is the true noise for a known x0: DDPM over all
    steps and DDIM over a few must both land on x0."""
    schedule = NoiseSchedule(T)
    ac = torch.tensor(schedule.alphas_cumprod)
    x0 = torch.from_numpy(np.random.default_rng(1).uniform(-0.95, 0.95, (3, 4, 2))).float()
    calls: list[int] = []

    def oracle(noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        calls.append(int(timesteps[0]))
        a = ac[timesteps].reshape(-1, 1, 1)
        return ((noisy.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).float()

    generator = torch.Generator().manual_seed(0)
    chunks = sample_chunks(schedule, oracle, (3, 4, 2), steps, generator, clip_sample=clip)
    assert calls == schedule.inference_timesteps(steps)
    torch.testing.assert_close(chunks, x0, rtol=0, atol=1e-3)  # x̂0 at t = T − 1: ×1/√ᾱ ≈ 2000


def test_sampler_without_signal_stays_noise_like_and_clipped():
    """A predictor that knows nothing (ε̂ = 0) does not return any particular x0: the check
    above is not trivially satisfied; outputs are clipped to the action range."""
    schedule = NoiseSchedule(T)
    generator = torch.Generator().manual_seed(0)
    chunks = sample_chunks(
        schedule, lambda x, t: torch.zeros_like(x), (64, 4, 2), 10, generator, clip_sample=False
    )
    assert chunks.abs().max() <= 1.0 and chunks.std() > 0.3


# -- the agent: learning and acting ---------------------------------------------------------


@pytest.mark.parametrize("proprio_dim", [0, 4])
def test_loss_drops_overfitting_a_fixed_batch(proprio_dim):
    torch.manual_seed(0)
    agent = dp_agent(proprio_dim=proprio_dim, augment_pad=0, hidden_dim=64, lr=1e-3)
    batch = fixed_batch(proprio=proprio_dim)
    losses = [agent.update(batch, step)["bc_loss"] for step in range(400)]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    print(f"diffusion loss: first 10 updates {first:.3f}, last 10 {last:.3f}")
    assert last <= 0.2 * first


def test_padded_chunk_steps_are_masked_out_of_the_loss(monkeypatch):
    agent = dp_agent(augment_pad=0)
    replay = EpisodicReplay(capacity=100, frame_stack=3, nstep=1, discount=0.9, seed=1)
    rng = np.random.default_rng(0)
    replay.add_episode(
        {
            "frames": rng.integers(0, 256, (7, 3, 24, 24), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (6, ACTION_DIM)).astype(np.float32),
            "reward": np.ones(6, np.float32),
            "terminated": np.array(False),
        }
    )
    batch = replay.sample(16, horizon=4, pad=True)
    mask = torch.as_tensor(batch["action_seq_mask"])
    assert not mask.all() and mask.any()
    # A network that predicts ε̂ = 0 and noise ε = 1 on real steps, 10 on padded ones: the loss
    # is the mean of ε² over the real steps only.
    noise = torch.where(mask[..., None], 1.0, 10.0).expand(-1, -1, ACTION_DIM).contiguous()
    monkeypatch.setattr(torch, "randn_like", lambda like: noise.clone())
    agent.policy.forward = lambda noisy, timesteps, cond: 0.0 * noisy + 0.0 * cond.sum()
    assert agent.update(batch, 0)["bc_loss"] == pytest.approx(1.0)
    unmasked = {k: v for k, v in batch.items() if k != "action_seq_mask"}
    assert agent.update(unmasked, 0)["bc_loss"] == pytest.approx(noise.pow(2).mean().item())


def test_config_errors():
    with pytest.raises(ValueError, match="inference_steps must be in"):
        DiffusionPolicyConfig(inference_steps=0)
    with pytest.raises(ValueError, match="inference_steps must be in"):
        DiffusionPolicyConfig(num_train_timesteps=20, inference_steps=21)
    with pytest.raises(ValueError, match="num_blocks"):
        DiffusionPolicyConfig(num_blocks=0)
    with pytest.raises(ValueError, match="loss must be one of"):
        DiffusionPolicyConfig(loss="huber")
    assert agent_class("diffusion_policy") is DiffusionPolicyAgent


@pytest.mark.parametrize("inference_steps", [T, 5])
def test_acting_noise_is_reproducible_and_step_action_is_a_function_of_the_observation(
    inference_steps,
):
    torch.manual_seed(0)
    agent = dp_agent(proprio_dim=4, inference_steps=inference_steps)
    obs = observations(3, proprio=4)

    def episode() -> np.ndarray:
        agent.begin_episodes()
        return np.stack([agent.act_batch(obs, 0, eval_mode=True) for _ in range(5)])

    first = episode()
    np.testing.assert_array_equal(episode(), first)  # every evaluation replays the same noise
    assert np.abs(first).max() <= 1.0
    # The noise is real: another seed samples other chunks.
    other = dp_agent(proprio_dim=4, inference_steps=inference_steps, noise_seed=1)
    other.load_state_dict(agent.state_dict())
    other.begin_episodes()
    assert not np.array_equal(other.act_batch(obs, 0, eval_mode=True), first[0])
    # step_action: fixed noise, whatever the generator's state and the rest of the batch.
    fixed = agent.step_action(obs)
    agent.act_batch(obs, 0, eval_mode=True)
    torch.testing.assert_close(agent.step_action(obs), fixed, rtol=0, atol=0)
    for row in range(3):
        alone = agent.step_action({k: v[row : row + 1] for k, v in obs.items()})
        torch.testing.assert_close(alone[0], fixed[row])
    torch.testing.assert_close(other.step_action(obs), other.step_action(obs), rtol=0, atol=0)


def test_chunk_execution_runs_sampled_chunks_open_loop():
    torch.manual_seed(0)
    agent = dp_agent(inference="chunk", execute_steps=3)
    obs = observations(2)
    agent.begin_episodes()
    actions = np.stack([agent.act_batch(obs, 0, eval_mode=True) for _ in range(4)])
    agent.generator.manual_seed(agent.cfg.noise_seed)
    first = agent.predict_chunk(obs["pixels"]).numpy()
    second = agent.predict_chunk(obs["pixels"]).numpy()
    np.testing.assert_array_equal(actions[:3], first[:, :3].transpose(1, 0, 2))
    np.testing.assert_array_equal(actions[3], second[:, 0])


def test_temporal_ensembling_averages_sampled_chunks():
    torch.manual_seed(0)
    decay = 0.3
    agent = dp_agent(inference="ensemble", ensemble_decay=decay)
    obs = observations(1)
    agent.begin_episodes()
    actions = [agent.act_batch(obs, 0, eval_mode=True)[0] for _ in range(3)]
    agent.generator.manual_seed(agent.cfg.noise_seed)
    chunks = [agent.predict_chunk(obs["pixels"])[0].numpy() for _ in range(3)]
    # Step 2 sees the chunks of steps 0, 1, 2 (entries 2, 1, 0), oldest weighted most.
    weights = np.exp(-decay * np.arange(3))
    expected = (weights[:, None] * np.stack([chunks[0][2], chunks[1][1], chunks[2][0]])).sum(0)
    np.testing.assert_allclose(actions[2], expected / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(actions[0], chunks[0][0], rtol=1e-6)


# -- checkpoints -------------------------------------------------------------------------------


def save_dp_checkpoint(tmp_path, agent: DiffusionPolicyAgent, frame: int = 100):
    meta = {
        "agent_name": "diffusion_policy",
        "agent_class": class_path(DiffusionPolicyAgent),
        "config": {"agent": asdict(agent.cfg)},
        "counters": {"step": 0, "frame": frame},
    }
    return save_checkpoint(tmp_path / "base", frame, {"agent": agent.state_dict()}, meta)


def trained_base(proprio_dim: int = 0, **overrides) -> DiffusionPolicyAgent:
    """A base that has learned chunks toward (0.6, -0.5): actions far from 0."""
    torch.manual_seed(0)
    agent = dp_agent(proprio_dim=proprio_dim, augment_pad=0, hidden_dim=64, lr=2e-3, **overrides)
    batch = fixed_batch(proprio=proprio_dim)
    batch["action_seq"] = np.broadcast_to(np.float32([0.6, -0.5]), (16, 4, 2)).copy()
    for step in range(150):
        agent.update(batch, step)
    return agent


def test_save_load_reproduces_actions_exactly(tmp_path):
    agent = trained_base(proprio_dim=4, inference="chunk")
    obs = observations(3, proprio=4)
    path = save_dp_checkpoint(tmp_path, agent)
    checkpoint = load_checkpoint(path)
    assert set(checkpoint.state["agent"]["modules"]) == {"encoder", "policy"}
    torch.manual_seed(123)  # the fresh agent starts from other weights
    fresh = dp_agent(proprio_dim=4, augment_pad=0, hidden_dim=64, lr=2e-3, inference="chunk")
    assert not torch.equal(fresh.step_action(obs), agent.step_action(obs))
    fresh.load_state_dict(checkpoint.state["agent"])
    torch.testing.assert_close(fresh.step_action(obs), agent.step_action(obs), rtol=0, atol=0)
    for acting in (fresh, agent):
        acting.begin_episodes()
    for _ in range(6):
        np.testing.assert_array_equal(
            fresh.act_batch(obs, 0, eval_mode=True), agent.act_batch(obs, 0, eval_mode=True)
        )
    # Optimizer state too: the next update is the same.
    batch = fixed_batch(proprio=4)
    torch.manual_seed(7)
    expected = agent.update(batch, 0)["bc_loss"]
    torch.manual_seed(7)
    assert fresh.update(batch, 0)["bc_loss"] == expected


# -- residual agents on a diffusion base -------------------------------------------------------


@pytest.mark.parametrize("inference_steps", [5, T])
@pytest.mark.parametrize("proprio_dim", [0, 4])
def test_residual_starts_exactly_at_a_diffusion_base(tmp_path, proprio_dim, inference_steps):
    base = trained_base(proprio_dim=proprio_dim, inference_steps=inference_steps)
    path = save_dp_checkpoint(tmp_path, base)
    cfg = ResidualConfig(base_checkpoint=str(path), hidden_dim=32, feature_dim=16)
    agent = ResidualAgent(
        cfg, obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu", proprio_dim=proprio_dim
    )
    assert isinstance(agent.base, DiffusionPolicyAgent)
    obs = observations(5, seed=3, proprio=proprio_dim)
    expected = base.step_action(obs).numpy()
    # Learned toward (0.6, -0.5); 150 updates and few steps leave it short of that, but signed.
    assert (expected[:, 0] > 0.3).all() and (expected[:, 1] < -0.2).all(), expected
    np.testing.assert_array_equal(agent.act_batch(obs, 0, eval_mode=True), expected)
    np.testing.assert_array_equal(agent.act_batch(obs, 0, eval_mode=True), expected)  # again
    for row in range(5):
        single = agent.act({k: v[row] for k, v in obs.items()}, 0, eval_mode=True)
        np.testing.assert_array_equal(
            single, base.step_action({k: v[row : row + 1] for k, v in obs.items()}).numpy()[0]
        )
    noisy = agent.act_batch(obs, 0, eval_mode=False)
    assert 0 < np.abs(noisy - expected).max() <= agent.cfg.residual_scale + 1e-6

    # Learning leaves the base as it was; the checkpoint carries it (hash checked).
    replay = EpisodicReplay(capacity=200, frame_stack=3, nstep=2, discount=0.9, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        data = {
            "frames": rng.integers(0, 256, (11, 3, 24, 24), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (10, 2)).astype(np.float32),
            "reward": np.ones(10, np.float32),
            "terminated": np.array(False),
        }
        if proprio_dim:
            data["proprio"] = rng.normal(size=(11, proprio_dim)).astype(np.float32)
        replay.add_episode(data)
    agent.update(replay.sample(8), 0)
    np.testing.assert_array_equal(agent.base.step_action(obs).numpy(), expected)
    fresh = ResidualAgent(
        cfg, obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu", proprio_dim=proprio_dim
    )
    fresh.load_state_dict(agent.state_dict())
    np.testing.assert_array_equal(
        fresh.act_batch(obs, 0, eval_mode=True), agent.act_batch(obs, 0, eval_mode=True)
    )


def test_residual_ppo_starts_exactly_at_a_diffusion_base(tmp_path):
    base = trained_base()
    path = save_dp_checkpoint(tmp_path, base)
    cfg = PPOConfig(base_checkpoint=str(path), hidden_dim=16, feature_dim=8)
    agent = PPOAgent(cfg, obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu")
    obs = observations(4, seed=5)
    expected = base.step_action(obs).numpy()
    np.testing.assert_array_equal(agent.act_batch(obs, 0, eval_mode=True), expected)
    step = agent.explore(obs)
    np.testing.assert_allclose(
        step.env_action.numpy(), np.clip(expected + 0.1 * step.action.numpy(), -1, 1), atol=1e-6
    )


def test_load_base_policy_builds_the_saved_kind(tmp_path):
    base = trained_base(inference_steps=7, num_train_timesteps=50)
    loaded = load_base_policy(
        save_dp_checkpoint(tmp_path, base), obs_shape=OBS_SHAPE, action_dim=ACTION_DIM, device="cpu"
    )
    assert isinstance(loaded, DiffusionPolicyAgent)
    assert (loaded.cfg.inference_steps, loaded.cfg.num_train_timesteps) == (7, 50)
    assert all(not p.requires_grad for p in loaded.policy.parameters())
    obs = observations(2)
    torch.testing.assert_close(loaded.step_action(obs), base.step_action(obs), rtol=0, atol=0)
