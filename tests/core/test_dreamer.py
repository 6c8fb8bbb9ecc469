"""The DreamerV3 agent (robotrl.agents.dreamer): λ-returns and the return normaliser against
hand/numpy numbers, updates on sequence batches (one view, two views + proprio, RePo), acting
state across episodes, checkpoints and config errors. Tiny networks, 32×32 images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from robotrl.agents import agent_class
from robotrl.agents.dreamer import (
    DreamerAgent,
    DreamerConfig,
    ReturnNormalizer,
    lambda_return,
)
from robotrl.config import TrainConfig
from robotrl.nn.world_model import LatentState

ACTION_DIM = 2


def tiny_config(**overrides: object) -> DreamerConfig:
    sizes: dict[str, object] = {
        "deter_dim": 32,
        "hidden_dim": 32,
        "mlp_layers": 1,
        "cnn_depth": 4,
        "stoch_groups": 4,
        "stoch_classes": 4,
        "sequence_length": 6,
        "imag_horizon": 4,
    }
    return DreamerConfig(**(sizes | overrides))  # type: ignore[arg-type]


def make_agent(
    shape: tuple[int, ...] = (3, 32, 32), proprio_dim: int = 0, **overrides: object
) -> DreamerAgent:
    return DreamerAgent(
        tiny_config(**overrides),
        obs_shape=shape,
        action_dim=ACTION_DIM,
        device="cpu",
        proprio_dim=proprio_dim,
    )


def sequence_batch(
    shape: tuple[int, ...] = (3, 32, 32), proprio_dim: int = 0, batch: int = 3, length: int = 6
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    is_first = np.zeros((batch, length), bool)
    is_first[:, 0] = True
    is_first[1, 3] = True  # a reset inside a window must be handled too
    is_terminal = np.zeros((batch, length), bool)
    is_terminal[2, -1] = True
    data = {
        "obs": rng.integers(0, 256, (batch, length, *shape), dtype=np.uint8),
        "prev_action": np.where(
            is_first[..., None], 0, rng.uniform(-1, 1, (batch, length, ACTION_DIM))
        ).astype(np.float32),
        "reward": np.where(is_first, 0, rng.normal(size=(batch, length))).astype(np.float32),
        "is_first": is_first,
        "is_terminal": is_terminal,
    }
    if proprio_dim:
        data["proprio"] = rng.normal(size=(batch, length, proprio_dim)).astype(np.float32)
    return data


def test_lambda_return_matches_hand_computation() -> None:
    # States s0..s3; reward/cont describe arriving at each state (column 0 unused).
    reward = torch.tensor([[9.0, 1.0, 2.0, 3.0]])
    cont = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    value = torch.tensor([[5.0, 10.0, 20.0, 30.0]])
    gamma, lam = 0.9, 0.5
    # By hand: R3 = v3 = 30
    # R2 = r3 + γ c3 ((1-λ) v3 + λ R3) = 3 + 0.9 * (15 + 15) = 30
    # R1 = r2 + γ c2 (...) = 2 + 0 = 2
    # R0 = r1 + γ c1 ((1-λ) v1 + λ R1) = 1 + 0.9 * (5 + 1) = 6.4
    expected = torch.tensor([[6.4, 2.0, 30.0]])
    assert torch.allclose(lambda_return(reward, cont, value, gamma, lam), expected)
    # λ = 0: one-step TD targets; λ = 1: Monte Carlo with a v_H bootstrap.
    td = lambda_return(reward, cont, value, gamma, 0.0)
    assert torch.allclose(td, torch.tensor([[1 + 0.9 * 10, 2.0, 3 + 0.9 * 30]]))
    mc = lambda_return(reward, cont, value, gamma, 1.0)
    assert torch.allclose(mc, torch.tensor([[1 + 0.9 * 2, 2.0, 3 + 0.9 * 30]]))


def test_return_normalizer_tracks_numpy_percentiles() -> None:
    rng = np.random.default_rng(0)
    norm = ReturnNormalizer(decay=0.99, low=0.05, high=0.95, limit=1.0)
    low = high = 0.0
    for scale in (1.0, 50.0, 200.0):
        returns = rng.normal(scale=scale, size=(64, 15)).astype(np.float32)
        norm.update(torch.as_tensor(returns))
        low = 0.99 * low + 0.01 * np.percentile(returns, 5)
        high = 0.99 * high + 0.01 * np.percentile(returns, 95)
        assert norm.low == pytest.approx(low, rel=1e-4)
        assert norm.high == pytest.approx(high, rel=1e-4)
        assert norm.scale == pytest.approx(max(1.0, high - low), rel=1e-4)
    assert norm.scale > 1.0
    # A narrow return range is not blown up: S = max(1, P95 - P5).
    small = ReturnNormalizer(decay=0.0, low=0.05, high=0.95, limit=1.0)
    assert small.update(torch.linspace(0, 0.1, 101)) == 1.0


@pytest.mark.parametrize(
    ("shape", "proprio_dim", "overrides"),
    [
        ((3, 32, 32), 0, {}),
        ((2, 3, 32, 32), 4, {}),
        ((3, 32, 32), 0, {"repo": True}),
        ((3, 32, 32), 3, {"repo": True, "probe_decoder": False}),
        (
            (2, 3, 32, 32),
            0,
            {"repo": True, "latent": "gaussian", "gaussian_size": 5, "reward_dist": "normal"},
        ),
    ],
    ids=["single_view", "two_views_proprio", "repo", "repo_no_probe", "repo_gaussian"],
)
def test_update_runs_and_losses_are_finite(
    shape: tuple[int, ...], proprio_dim: int, overrides: dict[str, object]
) -> None:
    torch.manual_seed(0)
    agent = make_agent(shape, proprio_dim, **overrides)
    before = copy.deepcopy(agent.actor.state_dict())
    metrics = agent.update(sequence_batch(shape, proprio_dim), step=0)
    metrics |= agent.update(sequence_batch(shape, proprio_dim), step=1)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    for key in ("model_loss", "reward_loss", "cont_loss", "actor_loss", "critic_loss"):
        assert key in metrics
    if overrides.get("repo") and not overrides.get("probe_decoder", True):
        assert metrics["image_loss"] == 0.0
    else:
        assert metrics["image_loss"] > 0.0
    assert (metrics["proprio_loss"] > 0) == (proprio_dim > 0 and agent.cfg.probe_decoder)
    changed = any(not torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())
    assert changed


def test_repo_decoder_is_a_probe() -> None:
    """With RePo the reconstruction loss must not reach the encoder or the RSSM."""
    torch.manual_seed(0)
    agent = make_agent(repo=True)
    batch = sequence_batch()
    world_model = agent.world_model
    terms = world_model.losses(
        torch.as_tensor(batch["obs"]), None, torch.as_tensor(batch["prev_action"]),
        torch.as_tensor(batch["reward"]), torch.as_tensor(batch["is_first"]),
        torch.as_tensor(batch["is_terminal"]), free_nats=1.0, decoder_on_detached=True,
    )  # fmt: skip
    terms.image.sum().backward()
    assert all(p.grad is None for p in world_model.encoder.parameters())
    assert all(p.grad is None for p in world_model.rssm.parameters())
    assert any(p.grad is not None for p in world_model.decoder.parameters())


@pytest.mark.parametrize(("target_kl", "grows"), [(1e-4, True), (1e6, False)])
def test_repo_multiplier_moves_with_the_constraint(target_kl: float, grows: bool) -> None:
    torch.manual_seed(0)
    agent = make_agent(repo=True, repo_target_kl=target_kl, repo_beta_lr=1e-2)
    assert agent.multiplier is not None
    start = agent.multiplier().item()
    metrics = agent.update(sequence_batch(), step=0)
    assert (metrics["repo_kl_violation"] > 0) == grows
    after = agent.multiplier().item()
    assert (after > start) == grows and after != start


def test_repo_multiplier_is_projected_onto_its_ceiling() -> None:
    """Dual ascent that would take β above ``repo_max_beta`` stops at it, and β comes back
    down from there as soon as the constraint holds."""
    torch.manual_seed(0)
    agent = make_agent(repo=True, repo_target_kl=1e-4, repo_beta_lr=1.0, repo_max_beta=2e-5)
    assert agent.multiplier is not None
    for _ in range(2):
        metrics = agent.update(sequence_batch(), step=0)
        assert metrics["repo_kl_violation"] > 0
        assert agent.multiplier().item() == pytest.approx(2e-5, rel=1e-5)
    agent.cfg.repo_target_kl = 1e6  # now the constraint is slack: β must fall
    agent.update(sequence_batch(), step=0)
    assert agent.multiplier().item() < 0.9 * 2e-5


def test_act_batch_shapes_range_and_reset_rows() -> None:
    obs = {"pixels": sequence_batch(batch=3)["obs"][:, 0]}
    torch.manual_seed(1)
    fresh = make_agent()
    torch.manual_seed(1)
    first = fresh.act_batch(obs, step=0, eval_mode=True)
    assert first.shape == (3, ACTION_DIM) and first.dtype == np.float32
    assert np.all(np.abs(first) <= 1.0)

    torch.manual_seed(1)
    agent = make_agent()
    for _ in range(3):  # the recurrent state moves away from the initial state
        agent.act_batch(obs, step=0, eval_mode=True)
        training = agent.act_batch(obs, step=10**6, eval_mode=False)
        assert np.all(np.abs(training) <= 1.0)
    agent.begin_episodes(np.array([False, True, False]))
    torch.manual_seed(1)
    after_reset = agent.act_batch(obs, step=0, eval_mode=True)
    assert np.allclose(after_reset[1], first[1], atol=1e-6)
    assert not np.allclose(after_reset[0], first[0], atol=1e-6)
    # The previous action fed back is the one returned: the stored state holds it.
    assert np.allclose(agent._acting[True].prev_action.numpy(), after_reset)

    # Resetting everything (mask None) and a single-env act.
    agent.begin_episodes()
    torch.manual_seed(1)
    assert np.allclose(agent.act_batch(obs, step=0, eval_mode=True), first, atol=1e-6)
    single = agent.act({"pixels": obs["pixels"][0]}, step=0, eval_mode=True)
    assert single.shape == (ACTION_DIM,)


def test_exploration_actions_are_uniform_and_fed_back() -> None:
    torch.manual_seed(0)
    agent = make_agent(num_expl_steps=100)
    obs = {"pixels": sequence_batch(batch=64)["obs"][:, 0]}
    actions = agent.act_batch(obs, step=5, eval_mode=False)
    assert np.all(np.abs(actions) <= 1.0)
    assert actions.std() > 0.45  # uniform on [-1, 1]: std 0.577; the actor's is tanh-bounded
    assert np.allclose(agent._acting[False].prev_action.numpy(), actions)
    # Training and evaluation keep separate states.
    agent.act_batch({"pixels": obs["pixels"][:2]}, step=5, eval_mode=True)
    assert len(agent._acting[False].prev_action) == 64


def test_training_state_restarts_when_episodes_begin_even_if_an_evaluation_came_between() -> None:
    """After ``begin_episodes`` (the trainer calls it at every reset) the next training ``act``
    filters from the initial state and a zero action, as the world model's update does at
    ``is_first``, even when evaluation episodes ran in between and consumed their own reset."""
    agent = make_agent()
    obs = {"pixels": sequence_batch()["obs"][0, 0]}
    for _ in range(3):
        agent.act(obs, step=10**6, eval_mode=False)
    agent.begin_episodes()  # a training episode ended and its env reset
    agent.begin_episodes()  # an evaluation starts
    for _ in range(2):
        agent.act(obs, step=10**6, eval_mode=True)
    agent.act(obs, step=10**6, eval_mode=False)
    rssm = agent.world_model.rssm
    with torch.no_grad():
        expected, _ = rssm.img_step(rssm.initial_state(1), torch.zeros(1, ACTION_DIM))
    assert torch.allclose(agent._acting[False].latent.deter, expected, atol=1e-6)
    # Without a new episode the state carries over (the check above can fail).
    agent.act(obs, step=10**6, eval_mode=False)
    assert not torch.allclose(agent._acting[False].latent.deter, expected, atol=1e-3)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_actor_updates_raise_the_imagined_reward(sign: float) -> None:
    """The actor's objective has the right sign end to end (imagination, λ-returns, return
    scale, straight-through clip): with a fixed reward ``±w·h`` of the imagined deterministic
    state, actor-critic updates must raise the imagined reward, whichever way it points."""
    torch.manual_seed(0)
    agent = make_agent(actor_lr=1e-3, critic_lr=1e-3)
    rssm = agent.world_model.rssm
    weights = sign * torch.randn(rssm.deter_dim)
    agent.world_model.reward = lambda features: features[..., : rssm.deter_dim] @ weights  # type: ignore[method-assign]
    with torch.no_grad():
        initial = rssm.initial_state(32)
    start = (LatentState(initial.deter.clone(), initial.stoch.clone()), torch.ones(32))
    rewards = [agent.update_behaviour(start)["imag_reward"] for _ in range(40)]
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.2


@pytest.mark.parametrize("slow", [False, True])
def test_lambda_returns_bootstrap_on_the_configured_critic(slow: bool) -> None:
    """``bootstrap_slow_critic=false`` (the paper): the λ-returns read the critic, and the slow
    critic is only the regulariser's target; ``true`` (DreamerV2's target network): the reverse.
    Shifting one critic's output by a constant moves the imagined return only if it is the one
    bootstrapped on."""
    torch.manual_seed(0)
    agent = make_agent(bootstrap_slow_critic=slow, actor_lr=1e-12, critic_lr=1e-12)
    with torch.no_grad():
        start_state = agent.world_model.rssm.initial_state(16)
    start = (LatentState(start_state.deter.clone(), start_state.stoch.clone()), torch.ones(16))
    snapshot = copy.deepcopy(agent.state_dict())
    torch.manual_seed(1)
    base = agent.update_behaviour(start)["imag_return"]
    returns = {}
    for name in ("critic", "slow_critic"):
        agent.load_state_dict(snapshot)
        with torch.no_grad():
            getattr(agent, name).net[-1].bias[agent.twohot.num_bins // 2 + 40] += 30.0
        torch.manual_seed(1)
        returns[name] = agent.update_behaviour(start)["imag_return"]
    moved, still = ("slow_critic", "critic") if slow else ("critic", "slow_critic")
    assert abs(returns[moved] - base) > 0.5
    assert returns[still] == pytest.approx(base, abs=1e-5)


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_state_dict_round_trip_reproduces_the_next_update(latent: str) -> None:
    torch.manual_seed(0)
    agent = make_agent(repo=True, latent=latent)
    agent.update(sequence_batch(), step=0)
    state = copy.deepcopy(agent.state_dict())
    torch.manual_seed(5)
    restored = make_agent(repo=True, latent=latent)
    restored.load_state_dict(state)
    assert restored.return_norm.low == agent.return_norm.low
    torch.manual_seed(3)
    expected = agent.update(sequence_batch(), step=1)
    torch.manual_seed(3)
    got = restored.update(sequence_batch(), step=1)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert set(agent.get_weights()) == {"world_model", "actor"}


@pytest.mark.parametrize("repo", [False, True])
def test_checkpoint_save_load_resume_reproduces_the_next_losses(tmp_path, repo: bool) -> None:
    """Through the trainer's checkpoint files (not an in-memory copy): a run trained on the fake
    env saves at its end; a new trainer resumes from that directory (agent, optimisers, return
    normaliser, replay from its episode files, replay and torch RNGs) and its next three updates
    give exactly the losses the original run's next three updates give."""
    from robotrl.config import EnvConfig, LoggerConfig, ReplayConfig, TaskConfig, TrainConfig
    from robotrl.envs.wrappers import FrameStack
    from robotrl.logger import Logger
    from robotrl.replay import EpisodicReplay
    from robotrl.trainer import Trainer
    from tests.core.fakes import SIZE, DotEnv

    cfg = TrainConfig(
        agent=tiny_config(repo=repo, update_every_steps=5, num_expl_steps=10),
        task=TaskConfig(suite="fake", name="dot"),
        env=EnvConfig(image_size=SIZE, action_repeat=1, frame_stack=1),
        replay=ReplayConfig(capacity=1000, batch_size=3, nstep=1),
        logger=LoggerConfig(tensorboard=False, progress_bar=False, save_video=False),
        frames=40,
        seed_frames=20,
        eval_every_frames=40,
        eval_episodes=1,
        checkpoint_every_frames=40,
    )

    def make_trainer() -> Trainer:
        torch.manual_seed(0)
        agent = DreamerAgent(
            cfg.agent, obs_shape=(3, SIZE, SIZE), action_dim=1, device="cpu", proprio_dim=0
        )
        replay = EpisodicReplay(
            capacity=1000, frame_stack=1, nstep=1, discount=0.99, directory=tmp_path / "replay"
        )
        return Trainer(
            cfg,
            tmp_path,
            env=FrameStack(DotEnv(), 1),
            eval_env=FrameStack(DotEnv(), 1),
            agent=agent,
            replay=replay,
            logger=Logger(tmp_path, tensorboard=False),
            config_record={},
        )

    def next_losses(trainer: Trainer) -> list[dict[str, float]]:
        agent = trainer.agent
        return [
            agent.update(agent.sample_batch(trainer.replay, cfg.replay.batch_size), 40 + k)
            for k in range(3)
        ]

    first = make_trainer()
    first.train()  # ends with evaluate() then save(): the in-memory state is the saved one
    first.logger.close()
    expected = next_losses(first)
    second = make_trainer()
    assert second.resume() == 40
    got = next_losses(second)
    second.logger.close()
    assert got == expected  # exact: same floats, same order of operations
    assert {"model_loss", "actor_loss", "critic_loss"} <= set(got[0])


class FakeSequenceReplay:
    """``sample_sequences`` only, recording the batch sizes asked for."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def sample_sequences(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        self.sizes.append(batch_size)
        return sequence_batch(batch=batch_size, length=length)


def optimizer_steps(agent: DreamerAgent, name: str) -> int:
    optimizer = agent.optimizers[name]
    first = optimizer.param_groups[0]["params"][0]
    return int(optimizer.state[first]["step"]) if first in optimizer.state else 0


@pytest.mark.parametrize("pretrain", [0, 4])
def test_pretrain_burst_makes_exactly_n_world_model_updates_once(pretrain: int) -> None:
    """``pretrain_updates = N``: the first batch holds N + 1 batches; its update makes N + 1
    world-model steps and one actor/critic step; later batches and updates are the usual size.
    With N = 0 nothing changes (one world-model step per update, B rows)."""
    torch.manual_seed(0)
    agent = make_agent(pretrain_updates=pretrain)
    replay = FakeSequenceReplay()
    assert agent.extra_state()["pretrain_due"] == (pretrain > 0)
    agent.update(agent.sample_batch(replay, 3), step=0)  # type: ignore[arg-type]
    assert replay.sizes == [3 * (pretrain + 1)]
    assert optimizer_steps(agent, "world_model") == pretrain + 1
    assert optimizer_steps(agent, "actor") == optimizer_steps(agent, "critic") == 1
    agent.update(agent.sample_batch(replay, 3), step=1)  # type: ignore[arg-type]
    assert replay.sizes[1:] == [3]
    assert optimizer_steps(agent, "world_model") == pretrain + 2
    assert optimizer_steps(agent, "actor") == 2
    assert agent.extra_state()["pretrain_due"] is False
    # A resumed run does not burst again; a due burst survives a checkpoint.
    restored = make_agent(pretrain_updates=pretrain)
    restored.load_state_dict(agent.state_dict())
    assert not restored.pretrain_due
    fresh = make_agent(pretrain_updates=pretrain)
    fresh.load_state_dict(make_agent(pretrain_updates=pretrain).state_dict())
    assert fresh.pretrain_due == (pretrain > 0)


def test_pretrain_burst_rejects_a_batch_of_the_wrong_size() -> None:
    agent = make_agent(pretrain_updates=2)
    with pytest.raises(ValueError, match="pretrain_updates"):
        agent.update(sequence_batch(batch=4), step=0)


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_compiled_agent_computes_what_the_eager_one_does(latent: str) -> None:
    """``agent.compile=true`` changes speed, not maths: from the same weights, two updates
    (world model over the sequence, imagination through the compiled policy step) and acting
    give the eager agent's numbers. Inductor draws random numbers its own way, so for the
    comparison random ops fall back to eager's generator (``fallback_random``)."""
    import torch._dynamo
    import torch._inductor.config

    with torch._inductor.config.patch(fallback_random=True):
        compare_compiled_with_eager(latent)
    # The RSSM step, the posterior and the policy step each became at least one graph.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 3


def compare_compiled_with_eager(latent: str) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    eager = make_agent(latent=latent)
    compiled = make_agent(latent=latent, compile=True)
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))
    batch = sequence_batch()
    for step in range(2):
        torch.manual_seed(10 + step)
        expected = eager.update(batch, step)
        torch.manual_seed(10 + step)
        got = compiled.update(batch, step)
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-5), step
    pixels = {"pixels": batch["obs"][:, 0]}
    torch.manual_seed(3)
    expected_action = eager.act_batch(pixels, step=0, eval_mode=True)
    torch.manual_seed(3)
    got_action = compiled.act_batch(pixels, step=0, eval_mode=True)
    np.testing.assert_allclose(got_action, expected_action, rtol=1e-4, atol=1e-5)


def test_registry_and_contract_attributes() -> None:
    assert agent_class("dreamer") is DreamerAgent
    agent = make_agent(sequence_length=7, update_every_steps=3)
    assert agent.replay_sequence == 7 and agent.update_every_steps == 3


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"discount": 1.5}, "discount"),
        ({"imag_horizon": 0}, "imag_horizon"),
        ({"return_norm_low": 0.9, "return_norm_high": 0.1}, "return_norm"),
        ({"num_bins": 254}, "num_bins"),
        ({"actor_min_std": 2.0}, "actor_min_std"),
        ({"repo_target_kl": -1.0}, "repo_target_kl"),
        ({"pretrain_updates": -1}, "pretrain_updates"),
        ({"latent": "normal"}, "latent must be 'categorical' or 'gaussian'"),
        ({"gaussian_min_std": 0.0}, "gaussian_min_std"),
        ({"reward_dist": "mse"}, "reward_dist must be 'twohot' or 'normal'"),
        ({"repo_init_beta": 1.0, "repo_max_beta": 0.5}, "repo_max_beta"),
    ],
)
def test_bad_config_raises(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_bad_inputs_raise() -> None:
    agent = make_agent()
    with pytest.raises(ValueError, match="sequence"):
        agent.update({k: v[:, 0] for k, v in sequence_batch().items()}, step=0)
    with pytest.raises(ValueError, match="pixels"):
        agent.act_batch({"pixels": np.zeros((1, 3, 16, 16), np.uint8)}, step=0, eval_mode=True)
    with pytest.raises(ValueError, match="proprio_dim"):
        make_agent(proprio_dim=-1)
    with pytest.raises(ValueError, match=r"H == W"):
        make_agent(shape=(3, 32, 24))


def compose_train(*overrides: str) -> TrainConfig:
    """The typed ``robotrl-train`` config the packaged Hydra config composes to."""
    from hydra import compose, initialize_config_module

    from robotrl.builders import to_train_config
    from robotrl.config import register_configs

    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        return to_train_config(compose("train", overrides=list(overrides)))


@pytest.mark.parametrize("task", ["dmc/walker_walk", "dmc/humanoid_run", "builtin/reach"])
def test_packaged_config_composes_with_task_presets(task: str) -> None:
    agent_cfg = compose_train("agent=dreamer", f"task={task}").agent
    assert isinstance(agent_cfg, DreamerConfig)
    assert agent_cfg.imag_horizon == 15 and agent_cfg.discount == 0.997
    if task == "builtin/reach":  # the CPU preset (agent_task/dreamer/builtin/reach.yaml)
        assert (agent_cfg.sequence_length, agent_cfg.stoch_groups, agent_cfg.deter_dim) == (
            16,
            16,
            128,
        )
        assert (agent_cfg.update_every_steps, agent_cfg.pretrain_updates) == (1, 1000)
    else:  # the paper's DMC settings, model size S
        assert (agent_cfg.sequence_length, agent_cfg.stoch_groups, agent_cfg.deter_dim) == (
            64,
            32,
            512,
        )
        assert (agent_cfg.update_every_steps, agent_cfg.pretrain_updates) == (2, 0)


@pytest.mark.parametrize("task", ["dmc/walker_walk", "builtin/reach"])
def test_repo_experiment_sets_the_reference_world_model_over_the_task_presets(task: str) -> None:
    """``+experiment=repo`` wins over the CPU preset's world-model rate (1e-3) and its own run
    directory name; the preset's multiplier rate and ceiling apply to reach only."""
    cfg = compose_train("agent=dreamer", f"task={task}", "+experiment=repo")
    agent_cfg = cfg.agent
    assert isinstance(agent_cfg, DreamerConfig)
    assert agent_cfg.repo and agent_cfg.latent == "gaussian" and agent_cfg.gaussian_size == 30
    assert agent_cfg.reward_dist == "twohot" and not agent_cfg.reward_zero_init
    assert agent_cfg.model_lr == 3e-4
    reach = task == "builtin/reach"
    assert agent_cfg.repo_beta_lr == (1e-2 if reach else 1e-4)
    assert agent_cfg.repo_max_beta == (100.0 if reach else float("inf"))
    assert cfg.exp_name == "repo"


def test_paper_experiment_sets_dreamerv3_dmc_inputs() -> None:
    """``+experiment=dreamer_paper``: 64x64 single frames at action repeat 2 on a dmc task (whose
    own default is DrQ-v2's 84x84 stack of 3), the paper's size-S model untouched."""
    plain = compose_train("agent=dreamer", "task=dmc/walker_walk")
    assert plain.env.image_size == 84
    cfg = compose_train("agent=dreamer", "task=dmc/walker_walk", "+experiment=dreamer_paper")
    assert (cfg.env.image_size, cfg.env.frame_stack, cfg.env.action_repeat) == (64, 1, 2)
    assert (cfg.eval_every_frames, cfg.eval_episodes, cfg.exp_name) == (10_000, 10, "dreamer_paper")
    assert isinstance(cfg.agent, DreamerConfig) and cfg.agent.deter_dim == 512
    assert cfg.replay.batch_size == 16 and cfg.agent.sequence_length == 64
