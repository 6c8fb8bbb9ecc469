"""Typed hyper-parameters of the Stable-Baselines3 baselines (``agent=sb3_sac|sb3_ppo|sb3_td3``).

These schemas import nothing from SB3, so ``robotrl.config`` can register them whether or not
SB3 is installed; building a model (``robotrl.integrations.sb3_models``) is what needs it.

Field names follow SB3's constructor arguments (``buffer_size``, ``learning_starts``, ``tau``,
``n_steps``, ...) except where our own agents already name the same thing: ``lr`` (SB3's
``learning_rate``), ``discount`` (``gamma``), ``hidden_dim`` (the width of the actor's and
critic's two hidden layers, SB3's ``net_arch``) and ``feature_dim`` (the features extractor's
output). Task presets (``task/*``, ``dmc_difficulty/*``) tune those keys for every agent, and
they also set ``stddev_schedule`` and ``num_expl_steps`` for the DrQ-v2 family: SB3 agents accept
both so every task composes; TD3 explores with ``stddev_schedule`` as DrQ-v2 does, SAC and PPO
explore through their own stochastic policies, and off-policy agents act uniformly at random for
their first ``learning_starts`` steps rather than ``num_expl_steps``.

Counts are agent steps, as in SB3 (an env frame is a step times the action repeat).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from robotrl.schedules import LinearSchedule

FEATURES_EXTRACTORS = ("drqv2", "nature_cnn")


@dataclass
class SB3AgentConfig:
    """What every SB3 baseline shares: its features extractor, network sizes and optimiser."""

    name: str = MISSING
    # "drqv2": our DrQ-v2 pixel encoder then Linear -> LayerNorm -> Tanh to feature_dim (the
    # DrQ-v2 trunk); "nature_cnn": SB3's NatureCNN (images of at least 36x36).
    features_extractor: str = "drqv2"
    feature_dim: int = 50
    hidden_dim: int = 256
    # DrQ's random shift of training batches by up to this many pixels ("drqv2" extractor; 0: off).
    augment_pad: int = 0
    share_features_extractor: bool = False
    lr: float = 3e-4
    discount: float = 0.99
    n_envs: int = 1  # env copies stepped in turn (SB3's n_envs)
    # Set by DrQ-v2-family task presets; see the module docstring for what SB3 agents do with them.
    stddev_schedule: LinearSchedule = field(default_factory=LinearSchedule)
    num_expl_steps: int = 0

    def __post_init__(self) -> None:
        if self.features_extractor not in FEATURES_EXTRACTORS:
            raise ValueError(
                f"features_extractor must be one of {FEATURES_EXTRACTORS}, "
                f"got {self.features_extractor!r}"
            )
        if self.augment_pad and self.features_extractor != "drqv2":
            raise ValueError("augment_pad needs features_extractor='drqv2'")
        _positive(feature_dim=self.feature_dim, hidden_dim=self.hidden_dim, n_envs=self.n_envs)
        if self.augment_pad < 0:
            raise ValueError(f"augment_pad must be >= 0, got {self.augment_pad}")
        if not self.lr > 0.0 or not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"need lr > 0 and 0 <= discount <= 1, got {self.lr}, {self.discount}")


@dataclass
class SB3OffPolicyConfig(SB3AgentConfig):
    """Replay-buffer algorithms. ``None`` sizes come from the run, as for our own agents."""

    buffer_size: int | None = None  # None: the run's replay.capacity
    batch_size: int | None = None  # None: the run's replay.batch_size
    learning_starts: int | None = None  # random actions, no updates; None: seed_frames / repeat
    tau: float = 0.005
    train_freq: int = 1  # agent steps between rounds of updates
    gradient_steps: int = 1  # updates per round

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(train_freq=self.train_freq, gradient_steps=self.gradient_steps)
        _positive(buffer_size=self.buffer_size, batch_size=self.batch_size)
        if self.learning_starts is not None and self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")


@dataclass
class SB3SACConfig(SB3OffPolicyConfig):
    """SB3's SAC (defaults are SB3's)."""

    name: str = "sb3_sac"
    ent_coef: float | None = None  # None: learned (SB3's "auto"), starting at init_ent_coef
    init_ent_coef: float = 1.0
    target_entropy: float | None = None  # None: -action_dim (SB3's "auto")
    target_update_interval: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(
            init_ent_coef=self.init_ent_coef, target_update_interval=self.target_update_interval
        )


@dataclass
class SB3TD3Config(SB3OffPolicyConfig):
    """SB3's TD3, exploring with Gaussian action noise of std ``stddev_schedule(step)``."""

    name: str = "sb3_td3"
    lr: float = 1e-3
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(policy_delay=self.policy_delay)


@dataclass
class SB3PPOConfig(SB3AgentConfig):
    """SB3's PPO (defaults are SB3's); no replay buffer, so nothing to resume but the model."""

    name: str = "sb3_ppo"
    share_features_extractor: bool = True
    n_steps: int = 2048  # steps per env per rollout
    batch_size: int = 64  # minibatch size
    n_epochs: int = 10
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(n_steps=self.n_steps, batch_size=self.batch_size, n_epochs=self.n_epochs)
        if self.n_steps * self.n_envs < 2:
            raise ValueError("PPO needs n_steps * n_envs >= 2")


def _positive(**values: int | float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


SB3_FORMAT = "sb3"  # meta.json "format" of SB3 checkpoints (robotrl.integrations.sb3_training)


def is_sb3_meta(meta: dict[str, object]) -> bool:
    """Whether a checkpoint's ``meta.json`` says it holds an SB3 model rather than our tensors."""
    return meta.get("format") == SB3_FORMAT
