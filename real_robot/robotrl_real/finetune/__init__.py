"""HIL-SERL-style fine-tuning on the arm: an acting process, a learning process, and the gate.

Luo et al. (2024), "Precise and Dexterous Robotic Manipulation via Human-in-the-Loop
Reinforcement Learning": an RLPD agent (:mod:`robotrl.agents.rlpd`) learns online from a few
demonstrations, a success classifier gives the reward, and a person takes over with a teleop
device when the policy goes wrong; the corrections become demonstrations.

**Processes.** :class:`PolicyActor` runs :class:`~robotrl_real.env.RobotEnv` episodes next to the
driver (the robot PC); :class:`Learner` holds the replays and the agent and updates continuously
(a GPU server). Both run as Ray actors (``ray.remote(...)``, :func:`run_finetune`), so they can
live on different machines of one Ray cluster; both are plain classes that tests also drive
in-process.

**Actor.** Each episode it (1) at the episode boundary, and only there, asks the learner for
weights newer than its own version and swaps them in; (2) steps the env with the current policy,
tagging every transition with the policy version it was acted with and with
``info["intervention"]``, storing ``info["executed_action"]`` (the teleop's action during a
takeover) as the action; (3) queues the finished episode and delivers the queue to the learner.
The learner is found by name (``ray.get_actor``) and looked up again after any failure; calls
to it time out. A dead learner therefore never reaches the control loop: the actor keeps acting
with its last weights while episodes pile up in its queue (bounded, oldest dropped first), and
delivers them when a learner with the same name is back. Control safety does not depend on any
of this: the driver's safety layer and watchdog hold the arm on their own.

**Learner.** :meth:`Learner.add_episode` puts an episode into the online replay, and each
contiguous run of intervention steps, as its own episode, into the demo replay too (HIL-SERL
stores interventions in both buffers); a run ending mid-episode is cut off there (it bootstraps,
like a truncation). :meth:`Learner.train` makes RLPD updates (symmetric demo/online batches,
``utd`` critic updates per call) once both replays hold data, and publishes the acting weights
every ``publish_every`` updates with an increasing version. As a Ray actor a background thread
trains continuously (:meth:`Learner.start`) while episodes and weight requests come in.

**Reward.** Either the success classifier (HIL-SERL: reward 1 and termination on the first frame
it calls a success, :class:`ClassifierReward`), or any ``reward_fn(obs) -> (reward, success)``,
such as :class:`SuccessReward` around the sim twin's reach target.

**The gate.** Online RL with a classifier that calls failures successes teaches the policy to
fool it. :func:`check_classifier_gate` measures the false-positive rate on held-out labelled
frames (:mod:`robotrl_real.labeling` writes them next to the classifier) and refuses to start
above ``max_fpr`` (2%).

**CLI.** ``robotrl-finetune`` (:mod:`robotrl_real.finetune.cli`, argparse, :func:`main`;
``--help`` lists the options) points at a running driver (``--namespace``, ``--domain-id``), a
demo directory, a classifier directory and a run directory, where it writes checkpoints
(``checkpoints/step_<updates>``: safetensors + JSON, as every robotrl checkpoint; loading never
unpickles code), the online replay, and one MCAP recording per episode (``recordings/``,
:class:`~robotrl_real.recording.EpisodeRecorder`).

Departures from HIL-SERL: the learner serves weights when asked at episode boundaries instead of
pushing them over a gRPC stream (the effect on the actor is the same: weights change only between
episodes), and the encoder is trained from scratch (see :mod:`robotrl.agents.rlpd`).

**Layout.** :mod:`~robotrl_real.finetune.learner` (:class:`Learner`, :class:`LearnerConfig`),
:mod:`~robotrl_real.finetune.actor` (:class:`PolicyActor`, :class:`ActorConfig`),
:mod:`~robotrl_real.finetune.rewards` and :mod:`~robotrl_real.finetune.gate` (rewards and the
classifier gate), :mod:`~robotrl_real.finetune.orchestration` (the Ray processes,
:func:`run_finetune`), :mod:`~robotrl_real.finetune.demos` (:func:`collect_teleop_demos`),
:mod:`~robotrl_real.finetune.cli` (``robotrl-finetune``) and
:mod:`~robotrl_real.finetune.common` (shared constants). Every public name is importable from
``robotrl_real.finetune`` itself.
"""

from robotrl_real.finetune.actor import ActorConfig, EpisodeSummary, PolicyActor
from robotrl_real.finetune.cli import main
from robotrl_real.finetune.common import (
    ACTION_DIM,
    DEFAULT_LEARNER_NAME,
    DEFAULT_RAY_NAMESPACE,
    KEEP_CHECKPOINTS,
    PROPRIO_DIM,
    Episode,
)
from robotrl_real.finetune.demos import collect_teleop_demos
from robotrl_real.finetune.gate import (
    ClassifierGateError,
    check_classifier_gate,
    gated_classifier_reward,
)
from robotrl_real.finetune.learner import (
    Learner,
    LearnerConfig,
    check_episode,
    intervention_segments,
    replay_episode,
)
from robotrl_real.finetune.orchestration import (
    FinetuneResult,
    run_finetune,
    start_actor,
    start_learner,
)
from robotrl_real.finetune.rewards import ClassifierReward, SuccessReward

__all__ = [
    "ACTION_DIM",
    "DEFAULT_LEARNER_NAME",
    "DEFAULT_RAY_NAMESPACE",
    "KEEP_CHECKPOINTS",
    "PROPRIO_DIM",
    "ActorConfig",
    "ClassifierGateError",
    "ClassifierReward",
    "Episode",
    "EpisodeSummary",
    "FinetuneResult",
    "Learner",
    "LearnerConfig",
    "PolicyActor",
    "SuccessReward",
    "check_classifier_gate",
    "check_episode",
    "collect_teleop_demos",
    "gated_classifier_reward",
    "intervention_segments",
    "main",
    "replay_episode",
    "run_finetune",
    "start_actor",
    "start_learner",
]
