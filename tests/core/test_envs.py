"""The core's env layer: frame stacking and suite lookup through entry points."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robotrl import envs
from robotrl.envs import UnknownSuiteError, available_suites, load_suite, make_env
from robotrl.envs.wrappers import FrameStack
from tests.core.fakes import DotEnv


def test_frame_stack_repeats_the_reset_frame_then_shifts_oldest_first():
    env = FrameStack(DotEnv(), 3)
    assert env.observation_space["pixels"].shape == (9, 24, 24)
    obs, _ = env.reset(seed=0)
    first = obs["pixels"][:3]
    np.testing.assert_array_equal(obs["pixels"], np.concatenate([first] * 3))
    frames = [first, first, first]
    for _ in range(4):
        obs, *_ = env.step(np.array([1.0], np.float32))
        frames.append(obs["pixels"][-3:])
        np.testing.assert_array_equal(obs["pixels"], np.concatenate(frames[-3:]))


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_frame_stack_passes_the_gymnasium_env_checker():
    check_env(FrameStack(DotEnv(), 3), skip_render_check=True)


def test_frame_stack_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        FrameStack(DotEnv(), 0)


def test_installed_suites_are_found_through_entry_points():
    assert {"builtin", "dmc"} <= set(available_suites())
    assert callable(load_suite("builtin"))


def test_unknown_suite_names_the_installed_ones_and_the_package(monkeypatch):
    with pytest.raises(
        UnknownSuiteError, match=r"installed suites: \['adroit', 'builtin', 'cell', 'dmc'"
    ):
        load_suite("nope")
    # A machine without robotrl-sim: every suite here comes with it, so the missing install is
    # simulated by hiding its entry points (the lookup itself is real).
    real = envs.entry_points
    monkeypatch.setattr(
        envs, "entry_points", lambda group: [e for e in real(group=group) if e.name != "robosuite"]
    )
    with pytest.raises(UnknownSuiteError, match=r"No environment suite named 'robosuite'") as err:
        make_env("robosuite", "lift", seed=0, image_size=64, action_repeat=1, frame_stack=1)
    assert "pip install robotrl-sim" in str(err.value)
