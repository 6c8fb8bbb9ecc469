"""``robotrl-train`` that SIGKILLs itself at a chosen point, for the exact-resume test.

``KILL_AT=<point>:<n>`` kills the process at the ``n``-th time this process reaches the point:
``collection`` (an agent step of training collection, before its updates), ``update`` (inside an
agent update: the critic updated, the actor not yet) or ``checkpoint`` (a checkpoint being
written: its tensors and meta.json written under the temporary name, not yet renamed).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import robotrl.checkpoint
from robotrl.agents.drqv2 import DrQV2Agent
from robotrl.cli.train import main
from robotrl.trainer import Trainer


def kill_at_call(owner: Any, name: str, n: int, *, after: bool = False) -> None:
    """Replace ``owner.name`` by a wrapper that kills the process on its ``n``-th call."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


POINTS = {
    "collection": lambda n: kill_at_call(Trainer, "run_updates", n),
    "update": lambda n: kill_at_call(DrQV2Agent, "update_actor", n),
    "checkpoint": lambda n: kill_at_call(robotrl.checkpoint, "write_json_atomic", n, after=True),
}

if __name__ == "__main__":
    point, count = os.environ["KILL_AT"].split(":")
    POINTS[point](int(count))
    sys.argv = ["robotrl-train", *sys.argv[1:]]
    main()
