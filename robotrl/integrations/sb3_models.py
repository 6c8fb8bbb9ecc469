"""Build SB3's SAC, TD3 and PPO from our typed configs, and act with them as our agents do.

The pieces: :class:`DrQV2Extractor` puts our DrQ-v2 pixel encoder in front of SB3's heads (SB3's
``NatureCNN`` is the other choice), :func:`build_model` turns an ``agent=sb3_*`` config into an
SB3 model on an SB3 VecEnv, :func:`load_model_state` restores one from SB3's own zip without
unpickling anything, and :class:`SB3Actor` gives a model our ``Agent`` acting interface so
``robotrl.evaluation.run_episodes`` (periodic evaluation, ``robotrl-eval``) plays it like ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from robotrl.agents.base import Agent, Batch
from robotrl.integrations.sb3 import RobotrlVecEnv
from robotrl.integrations.sb3_config import (
    SB3AgentConfig,
    SB3OffPolicyConfig,
    SB3PPOConfig,
    SB3SACConfig,
    SB3TD3Config,
)
from robotrl.nn.augment import RandomShift
from robotrl.nn.encoder import PixelEncoder
from robotrl.schedules import LinearSchedule

try:
    from stable_baselines3 import PPO, SAC, TD3
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.noise import ActionNoise
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.save_util import load_from_zip_file
    from stable_baselines3.common.torch_layers import (
        BaseFeaturesExtractor,
        CombinedExtractor,
        NatureCNN,
    )
except ImportError as error:
    raise ImportError(
        "robotrl's SB3 baselines need Stable-Baselines3, which is not installed: "
        "`pip install robotrl[sb3]` (tested with stable-baselines3==2.9.2)."
    ) from error

ALGORITHMS: dict[type[SB3AgentConfig], type[BaseAlgorithm]] = {
    SB3SACConfig: SAC,
    SB3TD3Config: TD3,
    SB3PPOConfig: PPO,
}


class DrQV2Extractor(BaseFeaturesExtractor):
    """Our DrQ-v2 encoder and trunk (conv net, Linear -> LayerNorm -> Tanh) as SB3 features.

    Takes raw pixel values (the policy must have ``normalize_images=False``: the encoder scales
    them itself). With a dict observation the other entries (``proprio``) are flattened and
    appended to the trunk's output. ``augment_pad`` > 0 shifts training batches at random (DrQ);
    SB3 puts its networks in training mode only for gradient steps, so acting is never shifted.
    """

    def __init__(
        self, observation_space: spaces.Space, feature_dim: int = 50, augment_pad: int = 0
    ) -> None:
        if isinstance(observation_space, spaces.Dict):
            pixels_space = observation_space["pixels"]
            self.extra_keys = sorted(key for key in observation_space.spaces if key != "pixels")
            extra_dim = sum(spaces.flatdim(observation_space[k]) for k in self.extra_keys)
        else:
            pixels_space, self.extra_keys, extra_dim = observation_space, [], 0
        assert pixels_space.shape is not None and len(pixels_space.shape) == 3
        super().__init__(observation_space, feature_dim + extra_dim)
        channels, height, width = pixels_space.shape
        self.encoder = PixelEncoder((channels, height, width))
        self.trunk = nn.Sequential(
            nn.Linear(self.encoder.repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()
        )
        self.augment = RandomShift(augment_pad) if augment_pad > 0 else None

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(observations, dict):
            pixels = observations["pixels"]
            extras = [observations[key].flatten(1).float() for key in self.extra_keys]
        else:
            pixels, extras = observations, []
        if self.augment is not None and self.training:
            pixels = self.augment(pixels)
        return torch.cat([self.trunk(self.encoder(pixels)), *extras], dim=1)


class ScheduledGaussianNoise(ActionNoise):
    """Gaussian action noise whose std follows ``schedule`` over the model's agent steps."""

    def __init__(self, schedule: LinearSchedule, action_dim: int, clock: Callable[[], int]) -> None:
        super().__init__()
        self.schedule, self.action_dim, self.clock = schedule, action_dim, clock

    def __call__(self) -> np.ndarray:
        std = self.schedule(self.clock())
        return np.random.normal(0.0, std, self.action_dim).astype(np.float32)


def build_model(
    cfg: SB3AgentConfig,
    env: RobotrlVecEnv,
    *,
    seed: int,
    device: str,
    buffer_size: int,
    batch_size: int,
    learning_starts: int,
) -> BaseAlgorithm:
    """The SB3 model ``cfg`` describes, on ``env``.

    ``buffer_size``, ``batch_size`` and ``learning_starts`` are the off-policy values to use
    where ``cfg`` leaves them ``None`` (the training CLI passes the run's replay settings).
    """
    dict_obs = isinstance(env.observation_space, spaces.Dict)
    policy_kwargs: dict[str, Any] = {"share_features_extractor": cfg.share_features_extractor}
    if cfg.features_extractor == "drqv2":
        policy_kwargs |= {
            "features_extractor_class": DrQV2Extractor,
            "features_extractor_kwargs": {
                "feature_dim": cfg.feature_dim,
                "augment_pad": cfg.augment_pad,
            },
            "normalize_images": False,
        }
    elif dict_obs:
        _check_nature_cnn_fits(env.observation_space)
        policy_kwargs |= {
            "features_extractor_class": CombinedExtractor,
            "features_extractor_kwargs": {"cnn_output_dim": cfg.feature_dim},
        }
    else:
        _check_nature_cnn_fits(env.observation_space)
        policy_kwargs |= {
            "features_extractor_class": NatureCNN,
            "features_extractor_kwargs": {"features_dim": cfg.feature_dim},
        }
    hidden = [cfg.hidden_dim, cfg.hidden_dim]
    common: dict[str, Any] = {
        "learning_rate": cfg.lr,
        "gamma": cfg.discount,
        "seed": seed,
        "device": device,
        "verbose": 0,
    }
    model: BaseAlgorithm
    policy = "MultiInputPolicy" if dict_obs else "CnnPolicy"
    if isinstance(cfg, SB3PPOConfig):
        policy_kwargs["net_arch"] = {"pi": hidden, "vf": hidden}
        model = PPO(
            policy,
            env,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            policy_kwargs=policy_kwargs,
            **common,
        )
        return model
    assert isinstance(cfg, SB3OffPolicyConfig)
    policy_kwargs["net_arch"] = {"pi": hidden, "qf": hidden}
    common |= {
        "buffer_size": cfg.buffer_size if cfg.buffer_size is not None else buffer_size,
        "batch_size": cfg.batch_size if cfg.batch_size is not None else batch_size,
        "learning_starts": (
            cfg.learning_starts if cfg.learning_starts is not None else learning_starts
        ),
        "tau": cfg.tau,
        "train_freq": (cfg.train_freq, "step"),
        "gradient_steps": cfg.gradient_steps,
        "policy_kwargs": policy_kwargs,
    }
    if isinstance(cfg, SB3SACConfig):
        model = SAC(
            policy,
            env,
            ent_coef=f"auto_{cfg.init_ent_coef}" if cfg.ent_coef is None else cfg.ent_coef,
            target_entropy="auto" if cfg.target_entropy is None else cfg.target_entropy,
            target_update_interval=cfg.target_update_interval,
            **common,
        )
        return model
    assert isinstance(cfg, SB3TD3Config)
    action_dim = int(np.prod(env.action_space.shape or (1,)))
    clock: list[BaseAlgorithm] = []  # the noise reads the model's step count once it exists
    noise = ScheduledGaussianNoise(
        cfg.stddev_schedule, action_dim, clock=lambda: clock[0].num_timesteps if clock else 0
    )
    model = TD3(
        policy,
        env,
        action_noise=noise,
        policy_delay=cfg.policy_delay,
        target_policy_noise=cfg.target_policy_noise,
        target_noise_clip=cfg.target_noise_clip,
        **common,
    )
    clock.append(model)
    return model


NATURE_CNN_MIN_SIZE = 36  # its 8x8/4, 4x4/2, 3x3/1 convolutions need at least 36x36 pixels


def _check_nature_cnn_fits(space: spaces.Space) -> None:
    pixels = space["pixels"] if isinstance(space, spaces.Dict) else space
    assert pixels.shape is not None
    if min(pixels.shape[1:]) < NATURE_CNN_MIN_SIZE:
        raise ValueError(
            f"features_extractor='nature_cnn' needs images of at least {NATURE_CNN_MIN_SIZE}x"
            f"{NATURE_CNN_MIN_SIZE}, these are {pixels.shape[1]}x{pixels.shape[2]}: set "
            "env.image_size higher or use features_extractor='drqv2'"
        )


def is_off_policy(model: BaseAlgorithm) -> bool:
    return isinstance(model, OffPolicyAlgorithm)


def load_model_state(model: BaseAlgorithm, zip_path: Path, device: str) -> None:
    """Load the networks, optimisers and tensors (SAC's entropy coefficient) of SB3's zip.

    Only the zip's ``torch.save`` files are read, with ``weights_only=True``; its pickled
    ``data`` entry (spaces, schedules, SB3 internals) is never deserialised: the model was
    rebuilt from our config, and our checkpoint meta carries the counters.
    """
    _, params, variables = load_from_zip_file(zip_path, device=device, load_data=False)
    model.set_parameters(params, exact_match=True, device=device)
    for name, value in (variables or {}).items():
        target = model
        *parents, leaf = name.split(".")
        for parent in parents:
            target = getattr(target, parent)
        getattr(target, leaf).data.copy_(value.data)


class SB3Actor(Agent):
    """An SB3 model behind our ``Agent`` acting interface (``act``, ``act_batch``, ``train``).

    SB3 learns inside ``model.learn``, so :meth:`update` is not available; ``modules`` holds the
    policy, so ``get_weights``/``load_weights`` sync it like our agents' actors.
    """

    config_class = SB3AgentConfig

    def __init__(self, model: BaseAlgorithm) -> None:
        observation_space = model.observation_space
        pixels = (
            observation_space["pixels"]
            if isinstance(observation_space, spaces.Dict)
            else observation_space
        )
        assert pixels.shape is not None and model.action_space.shape is not None
        super().__init__(
            None,
            obs_shape=tuple(pixels.shape),
            action_dim=int(model.action_space.shape[0]),
            device=str(model.device),
        )
        self.model = model
        self.modules = {"policy": model.policy}
        self.acting_modules = ("policy",)
        self._keys = (
            list(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else None
        )

    def _view(self, obs: Mapping[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        if self._keys is None:
            return np.asarray(obs["pixels"])
        return {key: np.asarray(obs[key]) for key in self._keys}

    def act(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        action, _ = self.model.predict(self._view(obs), deterministic=eval_mode)
        return np.asarray(action, dtype=np.float32)

    def act_batch(self, obs: Mapping[str, np.ndarray], step: int, eval_mode: bool) -> np.ndarray:
        return self.act(obs, step, eval_mode)  # SB3's predict takes batches as they are

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        raise NotImplementedError("SB3 models learn inside model.learn(); see sb3_training")
