"""Dreamer (``agent=dreamer``, with and without RePo) learns the built-in reach task from pixels
on CPU, through the real ``robotrl-train`` CLI, by the same margin as the model-free agents in
``tests/sim/test_learning.py``: the final evaluation return beats both a uniform random policy
and the untrained agent by 25.

Both tests are marked slow because they FAIL in the CI budget so far; the figures are in the
test docstrings and in docs/benchmarks.md (Dreamer section). The bottleneck is the world model:
for the first ~9k frames (~900 updates) of the CPU preset its reconstructions show only the
background (image loss ~17, summed over 3x32x32 pixels; the ~40 pixels of agent ball and target
disc are not drawn), so until then the latent state does not know where agent and target are
and the actor learns from an uninformative model; it recovers only past the 14k-frame budget.
A burst of 1000 world-model updates on the seed data (``agent.pretrain_updates=1000``) removes
that plateau but is not enough either (best: 62.8 at 14k with train ratio 64, ~11 min user).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robotrl.trainer import eval_reset_seed
from tests.sim.test_learning import SEED, random_policy_return, train_reach

FRAMES = 14_000  # DrQ-v2's budget in tests/sim/test_learning.py (~10 min on 2 CPU cores)


def train_and_score(tmp_path: Path, *overrides: str) -> tuple[float, float, float]:
    """(learned, untrained, random) eval returns of one ``agent=dreamer`` run on builtin/reach."""
    _, rows = train_reach(tmp_path, "dreamer", FRAMES, "torch_threads=1", *overrides, timeout=2400)
    learned = float(rows[FRAMES]["episode_return"])
    untrained = float(rows[0]["episode_return"])
    return learned, untrained, random_policy_return(eval_reset_seed(SEED))


@pytest.mark.slow
def test_dreamer_learns_builtin_reach_well_above_random(tmp_path):
    """Measured (seed 1, 14k frames, CPU preset, one torch thread, 2 shared cores):
    random 30-35, untrained 40.1, 34.9 at 14k frames (38.6 at 7k); 1500 updates, 10m31s wall
    (5m11s user) on a shared 2-core machine. The world model's image loss stays at ~17 until
    ~9k frames, then falls to ~7 by 14k; the actor has not recovered from training on an
    uninformative model by the end. Resumed to 22k frames: 45.6 at 21k, 53.5 at 22k (random
    + ~20, untrained + 13), 8m37s more wall. With ``agent.pretrain_updates=1000 actor_lr=1e-4
    critic_lr=1e-4``: 39.0 at 14k (6m16s user); adding ``update_every_steps=2``: 62.8 at 14k
    (untrained + 22.7, 10m56s user) (docs/benchmarks.md)."""
    learned, untrained, random_return = train_and_score(tmp_path)
    print(f"dreamer: random {random_return:.1f}, untrained {untrained:.1f}, learned {learned:.1f}")
    assert 10.0 < random_return < 45.0  # sanity: the task is as hard as described
    assert learned > random_return + 25.0
    assert learned > untrained + 25.0


@pytest.mark.slow
def test_dreamer_with_repo_learns_builtin_reach_well_above_random(tmp_path):
    """RePo (``agent.repo=true``): no reconstruction shapes the latent, only reward and
    continue prediction under the KL constraint. Measured (seed 1, 14k frames) only with
    ``agent.pretrain_updates=1000 actor_lr=1e-4 critic_lr=1e-4 update_every_steps=2``: 3.6 at
    7k, 46.8 at 14k (untrained 40.1), 10m51s user; the probe decoder's image loss stays ~15-16,
    so the latent does not locate agent and target (docs/benchmarks.md)."""
    learned, untrained, random_return = train_and_score(tmp_path, "agent.repo=true")
    print(f"repo: random {random_return:.1f}, untrained {untrained:.1f}, learned {learned:.1f}")
    assert learned > random_return + 25.0
    assert learned > untrained + 25.0
