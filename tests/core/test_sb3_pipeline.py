"""SB3 baselines in our pipeline, without a simulator: configs, model building, checkpoints.

End to end (learning, ``robotrl-eval``, kill and resume): tests/sim/test_sb3_train.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from stable_baselines3 import PPO, SAC, TD3  # pinned in requirements/lock.txt

from robotrl.builders import to_train_config
from robotrl.checkpoint import CheckpointError, list_checkpoints, prune_checkpoints
from robotrl.config import register_configs
from robotrl.envs.wrappers import FrameStack
from robotrl.integrations.sb3 import RobotrlVecEnv
from robotrl.integrations.sb3_config import (
    SB3AgentConfig,
    SB3PPOConfig,
    SB3SACConfig,
    SB3TD3Config,
)
from robotrl.integrations.sb3_models import DrQV2Extractor, SB3Actor, build_model
from robotrl.integrations.sb3_training import (
    MODEL_FILE,
    REPLAY_FILE,
    load_model_state,
    load_replay,
    load_sb3_actor,
    save_sb3_checkpoint,
)
from tests.core.fakes import DotEnv

pytestmark = pytest.mark.filterwarnings("ignore:The minimal resolution for an image")


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        yield


def dot_env(n_envs: int = 1) -> RobotrlVecEnv:
    return RobotrlVecEnv(
        [lambda: FrameStack(DotEnv(episode_steps=8), 3) for _ in range(n_envs)], seed=0
    )


def model_for(cfg: SB3AgentConfig, capacity: int = 500):
    return build_model(
        cfg, dot_env(), seed=0, device="cpu", buffer_size=capacity, batch_size=8, learning_starts=16
    )


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "schema"),
    [("sb3_sac", SB3SACConfig), ("sb3_td3", SB3TD3Config), ("sb3_ppo", SB3PPOConfig)],
)
@pytest.mark.parametrize("task", ["builtin/reach", "dmc/cheetah_run", "dmc/humanoid_run"])
def test_sb3_agents_compose_with_every_kind_of_task_preset(hydra_conf, agent, schema, task):
    # Task presets set DrQ-v2-family keys (hidden_dim, stddev_schedule, lr, feature_dim).
    typed = to_train_config(compose("train", overrides=[f"agent={agent}", f"task={task}"]))
    assert type(typed.agent) is schema and typed.agent.name == agent
    if task == "dmc/humanoid_run":
        assert (typed.agent.lr, typed.agent.feature_dim) == (8e-5, 100)


def test_reach_preset_for_sb3_sac(hydra_conf):
    typed = to_train_config(compose("train", overrides=["agent=sb3_sac"]))
    assert isinstance(typed.agent, SB3SACConfig)
    assert typed.agent.features_extractor == "drqv2" and typed.env.image_size == 32


def test_a_wrong_sb3_key_is_an_error_naming_it(hydra_conf):
    with pytest.raises(ConfigCompositionException, match=r"agent\.n_step\b"):
        compose("train", overrides=["agent=sb3_ppo", "agent.n_step=64"])
    with pytest.raises(ConfigCompositionException, match=r"agent\.n_steps"):
        compose("train", overrides=["agent=sb3_sac", "agent.n_steps=64"])  # PPO's, not SAC's
    with pytest.raises(ValueError, match="features_extractor"):
        to_train_config(compose("train", overrides=["agent=sb3_td3", "agent.features_extractor=x"]))
    with pytest.raises(ValueError, match="augment_pad needs"):
        SB3SACConfig(features_extractor="nature_cnn", augment_pad=4)


# --- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "algorithm"),
    [(SB3SACConfig(), SAC), (SB3TD3Config(), TD3), (SB3PPOConfig(n_steps=16), PPO)],
)
def test_build_model_puts_our_encoder_in_front_of_sb3s_heads(cfg, algorithm):
    cfg.hidden_dim, cfg.feature_dim = 32, 16
    model = model_for(cfg)
    assert type(model) is algorithm
    extractor = model.policy.actor.features_extractor if algorithm is not PPO else None
    extractor = extractor or model.policy.features_extractor
    assert isinstance(extractor, DrQV2Extractor) and extractor.features_dim == 16
    assert model.policy.normalize_images is False  # the encoder scales pixels itself
    actor = SB3Actor(model)
    obs, _ = FrameStack(DotEnv(), 3).reset(seed=1)
    action = actor.act(obs, step=0, eval_mode=True)
    assert action.shape == (1,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    np.testing.assert_array_equal(action, actor.act(obs, step=0, eval_mode=True))


def test_augmentation_shifts_training_batches_only():
    space = dot_env().observation_space
    extractor = DrQV2Extractor(space, feature_dim=8, augment_pad=4)
    pixels = torch.as_tensor(np.stack([space.sample() for _ in range(4)])).float()
    extractor.eval()
    torch.testing.assert_close(extractor(pixels), extractor(pixels))
    extractor.train()
    assert not torch.allclose(extractor(pixels), extractor(pixels))


def test_nature_cnn_on_too_small_images_is_a_clear_error():
    env = RobotrlVecEnv([lambda: FrameStack(DotEnv(), 3)])
    with pytest.raises(ValueError, match=r"at least 36x36, these are 24x24"):
        build_model(
            SB3SACConfig(features_extractor="nature_cnn"),
            env,
            seed=0,
            device="cpu",
            buffer_size=10,
            batch_size=4,
            learning_starts=0,
        )


def test_td3_explores_with_the_scheduled_noise():
    cfg = SB3TD3Config(hidden_dim=16, feature_dim=8)
    cfg.stddev_schedule.initial, cfg.stddev_schedule.final = 0.5, 0.1
    cfg.stddev_schedule.duration = 100
    model = model_for(cfg)
    noise = model.action_noise
    assert noise is not None
    assert np.std([noise() for _ in range(2000)]) == pytest.approx(0.5, rel=0.1)
    model.num_timesteps = 1000
    assert np.std([noise() for _ in range(2000)]) == pytest.approx(0.1, rel=0.1)


# --- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_round_trip_restores_weights_optimisers_entropy_and_replay(tmp_path):
    cfg = SB3SACConfig(hidden_dim=32, feature_dim=16)
    model = model_for(cfg, capacity=10_000)
    model.learn(40)  # 24 updates after 16 random steps
    size = model.replay_buffer.size()
    meta = {"format": "sb3", "agent_class": "stable_baselines3.sac.sac:SAC"}
    meta |= {"counters": {"step": 40}, "n_updates": model._n_updates}
    path = save_sb3_checkpoint(tmp_path, 80, model, meta)
    assert path.name == "step_000000000080" and json.loads((path / "meta.json").read_text())
    # The file holds the 40 filled slots, not the 10k allocated (~37 MB at 9x24x24 uint8 x2).
    assert (path / REPLAY_FILE).stat().st_size < 2_000_000
    assert model.replay_buffer.observations.shape[0] == 10_000  # the live buffer is untouched

    fresh = model_for(cfg, capacity=10_000)
    load_model_state(fresh, path / MODEL_FILE, "cpu")
    load_replay(fresh, path / REPLAY_FILE)
    for mine, theirs in zip(
        model.policy.state_dict().values(), fresh.policy.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(model.log_ent_coef, fresh.log_ent_coef)
    assert fresh.log_ent_coef is fresh.ent_coef_optimizer.param_groups[0]["params"][0]
    assert model.critic.optimizer.state_dict()["state"]  # Adam moments were saved and restored
    torch.testing.assert_close(
        model.critic.optimizer.state_dict()["state"][0]["exp_avg"],
        fresh.critic.optimizer.state_dict()["state"][0]["exp_avg"],
    )
    buffer = fresh.replay_buffer
    assert buffer.size() == size and buffer.observations.shape[0] == 10_000
    np.testing.assert_array_equal(
        buffer.observations[:size], model.replay_buffer.observations[:size]
    )
    np.testing.assert_array_equal(buffer.timeouts[:size], model.replay_buffer.timeouts[:size])
    fresh.learn(8, reset_num_timesteps=False)  # and it keeps adding where it stopped
    assert fresh.replay_buffer.size() == size + 8


def test_checkpoints_are_pruned_and_a_mismatched_algorithm_is_a_clear_error(tmp_path):
    model = model_for(SB3SACConfig(hidden_dim=16, feature_dim=8))
    meta = {"format": "sb3", "agent_class": "stable_baselines3.sac.sac:SAC"}
    meta |= {"counters": {"step": 0}, "n_updates": 0}
    # a config that builds TD3, beside SAC's weights
    meta["config"] = {"agent": {"name": "sb3_td3", "hidden_dim": 16, "feature_dim": 8}}
    for frame in (100, 200, 300):
        save_sb3_checkpoint(tmp_path, frame, model, meta)
    prune_checkpoints(tmp_path, 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_000000000200",
        "step_000000000300",
    ]
    with pytest.raises(
        CheckpointError, match=r"written by stable_baselines3\.sac\.sac:SAC, not .*TD3"
    ):
        load_sb3_actor(tmp_path / "step_000000000300", FrameStack(DotEnv(), 3), "cpu")


def test_a_corrupt_replay_file_is_a_checkpoint_error(tmp_path):
    model = model_for(SB3SACConfig(hidden_dim=32, feature_dim=16), capacity=1_000)
    model.learn(20)
    path = save_sb3_checkpoint(tmp_path, 40, model, {"format": "sb3", "counters": {"step": 20}})
    (path / REPLAY_FILE).write_bytes(b"not an npz file")
    with pytest.raises(CheckpointError, match="not a readable replay buffer"):
        load_replay(
            model_for(SB3SACConfig(hidden_dim=32, feature_dim=16), capacity=1_000),
            path / REPLAY_FILE,
        )
