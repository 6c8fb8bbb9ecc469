"""``RobotEnv`` against the sim-twin driver over real DDS on loopback (topics only)."""

from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np
import pytest

from robotrl_real import msgs
from robotrl_real.driver import DriverConfig, DriverNode
from robotrl_real.env import (
    ProgressReachReward,
    ReachReward,
    RobotEnv,
    RobotEnvConfig,
    action_from_twist,
    twist_from_action,
)
from robotrl_real.node import Node, free_domain_id, loopback_config
from robotrl_real.safety import SafetyConfig

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

SAFETY = SafetyConfig(workspace_min=(0.3, -0.3, 0.05), workspace_max=(0.7, 0.3, 0.45))
TARGET = (0.55, 0.05, 0.25)


@pytest.fixture
def stack():
    """A running sim driver, a RobotEnv and a spare client node, all in one fresh domain."""
    from robotrl_real.backends.sim import SimBackend

    domain_id, dds = free_domain_id(), loopback_config()
    driver = DriverNode(
        SimBackend(control_hz=50.0),
        DriverConfig(namespace="arm", safety=SAFETY),
        domain_id=domain_id,
        dds_config=dds,
    ).start()
    env = RobotEnv(
        RobotEnvConfig(namespace="arm", max_episode_steps=50, reset_joint_noise=0.03),
        reward_fn=ReachReward(TARGET),
        domain_id=domain_id,
        dds_config=dds,
    )
    client = Node("teleop", namespace="arm", domain_id=domain_id, config=dds)
    yield driver, env, client
    driver.close()  # first, so no message reaches a closing reader
    client.close()
    env.close()


def test_steps_give_pixels_proprio_reach_reward_and_a_steady_10hz(stack):
    driver, env, _ = stack
    obs, info = env.reset(seed=3)
    assert not info["estop"] and info["stale"] == []
    assert obs["pixels"].shape == (2, 3, 64, 64) and obs["pixels"].dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert obs["pixels"].std() > 5  # real rendered images, not blanks
    start = obs["proprio"][:3].copy()
    for _ in range(25):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0, 1.0]))
        assert not truncated and not terminated
    # the proprio is the TCP pose from the topic; the reward is computed from it
    np.testing.assert_allclose(
        reward, -np.linalg.norm(obs["proprio"][:3] - np.array(TARGET)), rtol=1e-6
    )
    true_position = driver.backend.read_state().tcp_position
    assert np.linalg.norm(obs["proprio"][:3] - true_position) < 0.01
    moved = obs["proprio"][0] - start[0]
    # 25 steps of max_step 0.02 m: 0.5 m commanded, box edge at x = 0.7 stops it earlier
    assert moved > 0.1 and obs["proprio"][0] <= SAFETY.workspace_max[0] + 0.005
    assert 0.07 < obs["proprio"][3] <= 0.081  # gripper width, open
    p99 = env.period_error_p99_ms()
    assert np.isfinite(p99) and info["period_p99_ms"] == p99
    print(
        f"\nRobotEnv 10 Hz loop: p99 period error {p99:.1f} ms over {len(env.period_errors)} steps"
    )
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0, 0, 0]))


def test_progress_reach_reward_is_reset_by_the_env_and_pays_the_gain_then_success(stack):
    """Rewards recomputed here from the proprio stream: 10 × (0.99·(−d') + d) while away, 1 on
    arrival; the env calls the reward's reset with each reset's observation."""
    _, env, _ = stack
    target = (0.55, 0.05, 0.25)
    env.reward_fn = ProgressReachReward(target, threshold=0.03)
    with pytest.raises(RuntimeError, match="before reset"):
        ProgressReachReward(target)({"proprio": np.zeros(8, np.float32)})
    obs, _ = env.reset(seed=1)
    distances = [np.linalg.norm(obs["proprio"][:3] - np.array(target))]
    rewards, successes = [], []
    for _ in range(20):
        offset = np.array(target) - obs["proprio"][:3]
        action = np.append(np.clip(offset / 0.02, -1.0, 1.0), 1.0)  # straight at it
        obs, reward, _, _, info = env.step(action)
        distances.append(np.linalg.norm(obs["proprio"][:3] - np.array(target)))
        rewards.append(reward)
        successes.append(info["success"])
    expected = [
        1.0 if after < 0.03 else 10.0 * (before - 0.99 * after)
        for before, after in itertools.pairwise(distances)
    ]
    np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)
    assert successes[-1] and not successes[0]  # it went from far to arrived
    assert min(r for r, s in zip(rewards, successes, strict=True) if not s) > 0  # always closer


def test_killing_a_camera_pauses_and_truncates(stack):
    driver, env, _ = stack
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, truncated, info = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
        assert not truncated and info["stale"] == []
    driver.kill_camera("front")
    truncated_at = None
    for step in range(15):
        _, reward, terminated, truncated, info = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
        if truncated:
            truncated_at = step
            break
    # the driver's camera threshold is 200 ms: the third 100 ms step at the latest
    assert truncated_at is not None and truncated_at <= 3, truncated_at
    assert info["stale"] == ["camera/front"] and not terminated and reward == 0.0
    time.sleep(0.3)
    assert driver.mode == "stale_sensor"  # the driver holds the arm
    assert driver.records()[-1].held
    assert driver.cameras["wrist"].alive and not driver.cameras["front"].alive


def test_intervention_executed_action_is_the_teleop_action(stack):
    driver, env, client = stack
    env.reset(seed=1)
    intervention = client.publisher("teleop/intervention")
    teleop = client.publisher("teleop/twist")
    assert intervention.wait_for_subscribers(1) and teleop.wait_for_subscribers(1)
    policy_action = np.array([1.0, 0.0, 0.0, -1.0])
    # The first step after a reset may start on the driver's last reset ticks (no motion): its
    # x lies between none and all of the action. The next step is all policy.
    for first in (True, False):
        _, _, _, _, info = env.step(policy_action)
        assert info["intervention"] is False
        if first:
            assert 0.0 <= info["executed_action"][0] <= 1.0
        else:
            np.testing.assert_allclose(info["executed_action"], policy_action)

    teleop_action = np.array([0.0, -0.5, 0.25])
    stop = threading.Event()

    def operator() -> None:
        intervention.publish(msgs.Bool(True))
        while not stop.is_set():
            teleop.publish(twist_from_action(teleop_action, env.config))
            time.sleep(0.02)

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        time.sleep(0.1)
        start = driver.backend.read_state().tcp_position
        for _ in range(5):
            _, _, _, _, info = env.step(policy_action)
            assert info["intervention"] is True
            np.testing.assert_allclose(info["executed_action"][:3], teleop_action, atol=1e-6)
            assert info["executed_action"][3] == policy_action[3]
        moved = driver.backend.read_state().tcp_position - start
        assert moved[1] < -0.02 and abs(moved[0]) < 0.01  # the teleop's -y, not the policy's +x
    finally:
        stop.set()
        thread.join()
        intervention.publish(msgs.Bool(False))
    time.sleep(0.1)
    _, _, _, _, info = env.step(policy_action)
    assert info["intervention"] is False


def test_action_twist_round_trip_and_config_errors():
    config = RobotEnvConfig(max_step=0.02, control_hz=10.0)
    message = twist_from_action([0.5, -1.0, 0.25, 0.0], config)
    # v = a * max_step / period = a * 0.2 m/s
    assert (message.twist.linear.x, message.twist.linear.y) == pytest.approx((0.1, -0.2))
    np.testing.assert_allclose(action_from_twist(message.twist, config), [0.5, -1.0, 0.25])
    with pytest.raises(ValueError, match="home_joints"):
        RobotEnvConfig(home_joints=(0.0,))
    with pytest.raises(ValueError, match="camera"):
        RobotEnvConfig(cameras=())


def test_executed_action_is_the_command_after_safety_and_zero_for_a_hold():
    """Over DDS with the sim twin: a step limit of 2 mm per 20 ms tick halves a full-speed
    action (4 mm per tick asked), the box's x wall stops the x motion entirely, a gripper limit
    of 0.8 caps the opening, and an e-stop hold is a zero motion with the gripper unchanged.
    Steady-state steps only (from the second step of a constant action on): tolerance 0.15 in
    action units per step (ticks 15-25 ms apart move 2 mm each: 0.4-0.67), 0.05 over the
    steps' mean; zeros within 1e-6."""
    from robotrl_real.backends.sim import SimBackend
    from robotrl_real.env import PANDA_HOME

    backend = SimBackend(control_hz=50.0)
    home, _ = backend.forward_kinematics(np.array(PANDA_HOME))
    safety = SafetyConfig(
        workspace_min=(0.2, -0.4, 0.05),
        workspace_max=(float(home[0]) + 0.03, 0.4, 0.6),
        max_translation_step=0.002,
        gripper_max=0.8,
    )
    domain_id, dds = free_domain_id(), loopback_config()
    driver = DriverNode(
        backend, DriverConfig(namespace="arm", safety=safety), domain_id=domain_id, dds_config=dds
    ).start()
    env = RobotEnv(
        RobotEnvConfig(namespace="arm", reset_joint_noise=0.0), domain_id=domain_id, dds_config=dds
    )
    client = Node("operator", namespace="arm", domain_id=domain_id, config=dds)
    try:
        env.reset(seed=0)
        # y: 0.2 m/s asked = 4 mm per tick; the step limit lets 2 mm through: 0.5, not 1.0
        infos = [env.step(np.array([0.0, -1.0, 0.0, 1.0]))[4] for _ in range(5)]
        executed = np.stack([info["executed_action"] for info in infos[1:]])
        assert all(info["source"] == "policy" for info in infos)
        assert np.all(np.abs(executed[:, 1] + 0.5) <= 0.15), executed
        assert abs(executed[:, 1].mean() + 0.5) <= 0.05, executed
        np.testing.assert_allclose(executed[:, [0, 2]], 0.0, atol=1e-6)
        np.testing.assert_allclose(executed[:, 3], 0.6, atol=1e-6)  # opening 1.0 capped at 0.8
        # x: 1.0 asked, 10 mm per step let through; the wall 30 mm ahead stops it: then 0
        infos = [env.step(np.array([1.0, 0.0, 0.0, 1.0]))[4] for _ in range(6)]
        assert all(info["source"] == "policy" for info in infos)
        assert abs(infos[1]["executed_action"][0] - 0.5) <= 0.1  # still on its way
        for info in infos[4:]:
            np.testing.assert_allclose(info["executed_action"], [0.0, 0.0, 0.0, 0.6], atol=1e-6)
        assert driver.safety.summary().clipped["workspace"] > 0
        print(
            f"\nexecuted y (asked -1.0, clipped -0.5): "
            f"{[round(float(v), 3) for v in executed[:, 1]]}; "
            f"x at the wall (asked 1.0): "
            f"{[round(float(i['executed_action'][0]), 6) for i in infos[4:]]}"
        )
        # an e-stop: a hold, a zero motion, the gripper command ignored (unchanged)
        estop = client.publisher("estop")
        assert estop.wait_for_subscribers(1)
        estop.publish(msgs.Bool(True))
        deadline = time.monotonic() + 2.0
        while driver.mode != "estop":
            assert time.monotonic() < deadline, "the e-stop never arrived"
            time.sleep(0.01)
        for _ in range(2):
            info = env.step(np.array([1.0, -1.0, 0.0, -1.0]))[4]
            assert info["source"] == "hold"
            np.testing.assert_allclose(info["executed_action"], [0.0, 0.0, 0.0, 0.6], atol=1e-6)
    finally:
        driver.close()
        client.close()
        env.close()
