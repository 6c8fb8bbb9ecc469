"""Distracting backgrounds (robotrl_sim.distractors) on builtin/reach and dmc, at small sizes."""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np
import pytest
from dm_control import suite

import robotrl_sim.builtin
from robotrl_sim._mujoco import FixedCameraRenderer
from robotrl_sim.builtin import make_env as make_builtin
from robotrl_sim.builtin.reach import ReachEnv
from robotrl_sim.distractors import (
    BackgroundDistractor,
    DistractorOptions,
    SegmentationRenderer,
    background_masks,
    parse_distractors,
    plane_geoms,
)
from robotrl_sim.dmc import DMCEnv
from robotrl_sim.dmc import make_env as make_dmc_env
from tests.sim.env_checks import check_env_bare_and_stacked

SIZE = 32


def make_reach(seed: int = 0, **options) -> ReachEnv:
    env = make_builtin("reach", seed=seed, image_size=SIZE, action_repeat=2, **options)
    assert isinstance(env, ReachEnv)
    return env


def make_dmc(task: str = "cartpole_swingup", seed: int = 0, **options) -> DMCEnv:
    env = make_dmc_env(task, seed=seed, image_size=SIZE, action_repeat=2, **options)
    assert isinstance(env, DMCEnv)
    return env


def hwc(pixels: np.ndarray) -> np.ndarray:
    return pixels.transpose(1, 2, 0)


def play(env, seed: int | None, actions: list[np.ndarray]) -> list[np.ndarray]:
    """``[H, W, 3]`` frames after reset and after each action."""
    obs, _ = env.reset(seed=seed)
    frames = [hwc(obs["pixels"])]
    for action in actions:
        obs, *_ = env.step(action)
        frames.append(hwc(obs["pixels"]))
    return frames


def reach_model() -> mujoco.MjModel:
    model_file = resources.files(robotrl_sim.builtin).joinpath("reach.xml")
    with resources.as_file(model_file) as path:
        return mujoco.MjModel.from_xml_path(str(path))


def reach_masks(env: ReachEnv, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(sky, floor) of the env's current state, from a segmentation render of its own."""
    segmenter = SegmentationRenderer(env._model, "top", size)
    masks = background_masks(segmenter.render(env._data, size), plane_geoms(env._model))
    segmenter.close()
    return masks


def dmc_masks(env: DMCEnv) -> tuple[np.ndarray, np.ndarray]:
    segmentation = env.physics.render(SIZE, SIZE, camera_id=env.camera_id, segmentation=True)
    return background_masks(segmentation, plane_geoms(env.physics.model))


ACTIONS = [np.array([0.8, -0.5], np.float32)] * 6


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("off", [None, False, "none", "off"])
def test_off_values_mean_no_distractors(off):
    assert parse_distractors(off) is None


def test_kinds_and_mappings_parse_to_options():
    assert parse_distractors("colors") == DistractorOptions(kind="colors")
    parsed = parse_distractors({"kind": "moving", "seed_offset": 3, "num_videos": 4})
    assert parsed == DistractorOptions(kind="moving", seed_offset=3, num_videos=4)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("wobbly", ValueError, "distractors must be one of 'moving', 'colors', 'none'"),
        ({"kind": "davis"}, ValueError, "kind must be one of 'moving', 'colors'"),
        ({"alpha": 0.0}, ValueError, r"alpha must be in \(0, 1\]"),
        ({"alpha": 1.5}, ValueError, r"alpha must be in \(0, 1\]"),
        ({"floor_alpha": -0.1}, ValueError, r"floor_alpha must be in \[0, 1\]"),
        ({"num_videos": 0}, ValueError, "num_videos must be a positive integer"),
        ({"seed_offset": -1}, ValueError, "seed_offset must be an integer >= 0"),
        ({"seed_offset": 1.5}, ValueError, "seed_offset must be an integer >= 0"),
        ({"speed": 2}, TypeError, "unknown option.*'speed'.*valid options are kind"),
        (3, TypeError, "distractors must be None, a kind"),
    ],
)
def test_bad_values_raise_clear_errors_from_both_adapters(value, error, match):
    with pytest.raises(error, match=match):
        make_reach(distractors=value)
    with pytest.raises(error, match=match):
        make_dmc("reacher_easy", distractors=value)


# --- compositing and segmentation, checked against independent numbers ----------------------


def test_composite_blends_sky_and_floor_with_the_given_alphas():
    options = DistractorOptions(kind="colors", alpha=0.75, floor_alpha=0.4)
    distractor = BackgroundDistractor(options, domain="cheetah")
    distractor.reset(seed=5)
    assert distractor.video is not None
    frame = np.full((4, 4, 3), 100, np.uint8)
    frame[0, 0] = (10, 20, 30)
    sky = np.zeros((4, 4), bool)
    sky[0, :] = True
    floor = np.zeros((4, 4), bool)
    floor[3, :] = True
    out = distractor.composite(frame, sky, floor, time=0.0)

    sky_rgb, floor_rgb = distractor.video.sky_colour * 255, distractor.video.floor_colour * 255
    for channel, original in enumerate((10, 20, 30)):
        assert out[0, 0, channel] == round(0.25 * original + 0.75 * sky_rgb[channel])
    for channel in range(3):
        assert out[0, 3, channel] == round(0.25 * 100 + 0.75 * sky_rgb[channel])
        assert out[3, 2, channel] == round(0.4 * 100 + 0.6 * floor_rgb[channel])
    np.testing.assert_array_equal(out[1:3], frame[1:3])  # foreground untouched
    assert not np.array_equal(out, frame)


def test_floor_alpha_defaults_to_the_distracting_control_suite_values():
    moving = DistractorOptions()
    assert BackgroundDistractor(moving, domain="reacher").floor_alpha == 0.0
    assert BackgroundDistractor(moving, domain="walker").floor_alpha == 1.0
    assert BackgroundDistractor(moving, domain="cheetah").floor_alpha == 1.0
    assert BackgroundDistractor(moving, domain="cartpole").floor_alpha == 0.3
    own = DistractorOptions(floor_alpha=0.6)
    assert BackgroundDistractor(own, domain="walker").floor_alpha == 0.6


def test_moving_video_is_smooth_in_time_and_moves_over_seconds():
    distractor = BackgroundDistractor(DistractorOptions(), domain="reacher")
    distractor.reset(seed=1)
    assert distractor.video is not None
    start = distractor.video.frame(48, 48, 0.0)
    assert start.shape == (48, 48, 3) and start.dtype == np.float32
    assert start.min() >= 0.0 and start.max() <= 1.0 and start.std() > 0.05
    soon = distractor.video.frame(48, 48, 0.01)
    later = distractor.video.frame(48, 48, 2.0)
    assert np.abs(soon - start).max() < 0.05
    assert np.abs(later - start).mean() > 0.05


def test_segmentation_renderer_matches_mujocos_own_segmentation():
    model = reach_model()
    data = mujoco.MjData(model)
    data.qpos[:2] = (0.1, -0.05)
    mujoco.mj_forward(model, data)
    reference_renderer = mujoco.Renderer(model, SIZE, SIZE)
    reference_renderer.enable_segmentation_rendering()
    reference_renderer.update_scene(data, camera="top")
    reference = reference_renderer.render()
    reference_renderer.close()

    segmenter = SegmentationRenderer(model, "top", SIZE)
    ours = segmenter.render(data, SIZE)
    segmenter.close()
    np.testing.assert_array_equal(ours, reference)
    agent = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "agent")
    assert (ours[..., 0] == agent).sum() > 10  # the ball is really in the labels


# --- builtin/reach ---------------------------------------------------------------------------


def test_reach_default_off_is_bit_identical_to_the_plain_render():
    plain = make_reach(seed=2)
    frames = play(plain, 2, ACTIONS)
    for off in (None, "none", False):
        env = make_reach(seed=2, distractors=off)
        assert [
            np.array_equal(a, b) for a, b in zip(play(env, 2, ACTIONS), frames, strict=True)
        ] == [True] * 7
        env.close()
    # ... and the plain env's frames are what a renderer of its own draws of the same state.
    reference = FixedCameraRenderer(plain._model, "top", SIZE)
    np.testing.assert_array_equal(reference.render(plain._data, SIZE), frames[-1])
    reference.close()
    plain.close()


@pytest.mark.parametrize("kind", ["moving", "colors"])
def test_reach_keeps_agent_pixels_and_replaces_the_background(kind):
    plain, distracted = make_reach(seed=4), make_reach(seed=4, distractors=kind)
    plain_frames = play(plain, 4, ACTIONS)
    distracted_frames = play(distracted, 4, ACTIONS)
    # Distractors change no physics: the agent ends where it ends without them.
    np.testing.assert_array_equal(plain.agent_position, distracted.agent_position)
    sky, floor = reach_masks(distracted)
    background = sky | floor
    assert 0.5 < background.mean() < 0.99  # the floor fills most of the top view
    last_plain, last_distracted = plain_frames[-1], distracted_frames[-1]
    np.testing.assert_array_equal(last_distracted[~background], last_plain[~background])
    differs = (last_distracted != last_plain).any(axis=-1)
    assert differs[background].mean() > 0.95
    changed = (distracted_frames[0] != distracted_frames[-1]).any(axis=-1)[background].mean()
    if kind == "moving":
        assert changed > 0.5  # the video moves within the episode (0.6 s from first to last)
    else:
        assert changed < 0.1  # one colour per episode (only where the agent was differs)
    plain.close()
    distracted.close()


def test_reach_same_seed_same_frames_new_episode_new_background():
    first, second = (
        make_reach(seed=9, distractors="moving"),
        make_reach(seed=9, distractors="moving"),
    )
    episodes_first = [play(first, None, ACTIONS[:2]) for _ in range(2)]
    episodes_second = [play(second, None, ACTIONS[:2]) for _ in range(2)]
    for a, b in zip(episodes_first, episodes_second, strict=True):
        for frame_a, frame_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(frame_a, frame_b)
    sky, floor = reach_masks(first)
    background = sky | floor
    # The next (unseeded) episode draws a new video.
    changed = (episodes_first[0][-1] != episodes_first[1][-1]).any(axis=-1)
    assert changed[background].mean() > 0.5
    # reset(seed=s) replays the episode a fresh env of seed s starts with.
    np.testing.assert_array_equal(play(first, 9, ACTIONS[:2])[-1], episodes_first[0][-1])
    first.close()
    second.close()


def test_reach_other_seed_or_seed_offset_gives_another_background_not_other_physics():
    base = play(make_reach(seed=3, distractors="moving"), 3, [])[0]
    other_seed = play(make_reach(seed=4, distractors="moving"), 4, [])[0]
    offset_env = make_reach(seed=3, distractors={"kind": "moving", "seed_offset": 1})
    other_offset = play(offset_env, 3, [])[0]
    sky, floor = reach_masks(offset_env)
    background = sky | floor
    assert (base != other_seed).any(axis=-1)[background].mean() > 0.5
    assert (base != other_offset).any(axis=-1)[background].mean() > 0.5
    # Same env seed: same agent and target, only the background differs.
    np.testing.assert_array_equal(base[~background], other_offset[~background])


def test_num_videos_plays_one_of_a_fixed_pool_chosen_by_seed_offset():
    def first_frames(seed_offset: int) -> dict[int, np.ndarray]:
        env = make_reach(
            seed=0,
            target="fixed",
            distractors={"kind": "moving", "num_videos": 2, "seed_offset": seed_offset},
        )
        assert env._distractor is not None
        by_video: dict[int, np.ndarray] = {}
        for seed in range(8):
            env.reset(seed=seed)
            index = env._distractor.video_index
            assert index is not None
            # Every episode that draws pooled video i plays the same video.
            video = env._distractor.video
            assert video is not None
            frame = video.frame(SIZE, SIZE, 0.0)
            if index in by_video:
                np.testing.assert_array_equal(by_video[index], frame)
            by_video[index] = frame
        env.close()
        return by_video

    train, held_out = first_frames(0), first_frames(1)
    assert sorted(train) == [0, 1] and sorted(held_out) == [0, 1]
    assert not np.array_equal(train[0], train[1])
    for video in train.values():
        assert all(not np.array_equal(video, other) for other in held_out.values())


def test_reach_render_shows_the_background_at_render_size():
    plain = make_reach(seed=1, render_size=64)
    distracted = make_reach(seed=1, render_size=64, distractors="moving")
    plain.reset()
    distracted.reset()
    plain_frame, frame = plain.render(), distracted.render()
    assert frame is not None and plain_frame is not None and frame.shape == (64, 64, 3)
    sky, floor = reach_masks(distracted, size=64)
    background = sky | floor
    np.testing.assert_array_equal(frame[~background], plain_frame[~background])
    assert (frame != plain_frame).any(axis=-1)[background].mean() > 0.95
    plain.close()
    distracted.close()


@pytest.mark.parametrize("kind", ["moving", "colors"])
def test_reach_with_distractors_passes_the_gymnasium_checker(kind):
    env = make_reach(episode_steps=10, distractors=kind)
    check_env_bare_and_stacked(env)
    env.close()


# --- dmc -------------------------------------------------------------------------------------


def test_dmc_default_off_is_bit_identical_to_dm_controls_render():
    plain = make_dmc(seed=3)
    off = make_dmc(seed=3, distractors=None)
    actions = [np.array([0.6], np.float32)] * 3
    plain_frames = play(plain, None, actions)
    for frame_plain, frame_off in zip(plain_frames, play(off, None, actions), strict=True):
        np.testing.assert_array_equal(frame_plain, frame_off)
    # ... and they are what dm_control itself renders of the same episode (3 actions x 2).
    reference = suite.load("cartpole", "swingup", task_kwargs={"random": 3}, visualize_reward=False)
    reference.reset()
    for _ in range(6):
        reference.step(np.array([0.6]))
    np.testing.assert_array_equal(
        plain_frames[-1], reference.physics.render(SIZE, SIZE, camera_id=0)
    )
    plain.close()
    off.close()


def test_dmc_keeps_agent_pixels_and_moves_the_background():
    plain, distracted = make_dmc(seed=5), make_dmc(seed=5, distractors="moving")
    distracted.reset(seed=5)
    start_sky, _ = dmc_masks(distracted)
    actions = [np.array([1.0], np.float32)] * 8
    plain_frames, distracted_frames = play(plain, 5, actions), play(distracted, 5, actions)
    np.testing.assert_array_equal(plain.physics.data.qpos, distracted.physics.data.qpos)
    sky, floor = dmc_masks(distracted)
    background = sky | floor
    assert sky.mean() > 0.2 and floor.mean() > 0.1
    last_plain, last_distracted = plain_frames[-1], distracted_frames[-1]
    np.testing.assert_array_equal(last_distracted[~background], last_plain[~background])
    assert (last_distracted != last_plain).any(axis=-1)[sky].mean() > 0.95
    # cartpole's floor keeps 30% of its own colour (the suite's ground_plane_alpha).
    assert (last_distracted != last_plain).any(axis=-1)[floor].mean() > 0.9
    moved = (distracted_frames[0] != distracted_frames[-1]).any(axis=-1)
    assert moved[sky & start_sky].mean() > 0.5
    # Same seed, same frames; another seed, another background.
    again = make_dmc(seed=5, distractors="moving")
    np.testing.assert_array_equal(play(again, 5, actions)[-1], last_distracted)
    other = play(again, 6, [])[0]
    assert (other != distracted_frames[0]).any(axis=-1)[sky & start_sky].mean() > 0.5
    for env in (plain, distracted, again):
        env.close()


def test_walker_keeps_its_floor_and_colors_paint_the_sky_one_colour_per_episode():
    plain, distracted = (
        make_dmc("walker_walk", seed=1),
        make_dmc("walker_walk", seed=1, distractors="colors"),
    )
    zero = [np.zeros(6, np.float32)] * 2
    plain_frames, distracted_frames = play(plain, 1, zero), play(distracted, 1, zero)
    sky, floor = dmc_masks(distracted)
    assert sky.any() and floor.any()
    np.testing.assert_array_equal(distracted_frames[-1][~sky], plain_frames[-1][~sky])
    sky_pixels = distracted_frames[-1][sky]
    assert (sky_pixels == sky_pixels[0]).all()  # one flat colour, alpha 1
    np.testing.assert_array_equal(distracted_frames[0][sky], distracted_frames[-1][sky])
    next_episode = play(distracted, None, [])[0]
    next_sky, _ = dmc_masks(distracted)
    assert not np.array_equal(next_episode[next_sky][0], sky_pixels[0])
    plain.close()
    distracted.close()


def test_dmc_with_distractors_passes_the_gymnasium_checker():
    env = make_dmc(distractors={"kind": "moving", "num_videos": 4})
    check_env_bare_and_stacked(env)
    env.close()


# --- config ----------------------------------------------------------------------------------


def test_experiment_overlay_turns_distractors_on_for_any_task():
    from hydra import compose, initialize_config_module

    from robotrl.builders import build_env, to_train_config
    from robotrl.config import register_configs

    register_configs()
    with initialize_config_module("robotrl.conf", version_base="1.3"):
        walker = to_train_config(
            compose(
                "train", overrides=["task=dmc/walker_walk", "+experiment=[drqv2_paper,distracted]"]
            )
        )
        reach = to_train_config(compose("train", overrides=["+experiment=distracted"]))
        evaluate = compose(
            "evaluate",
            overrides=[
                "checkpoint=runs/x",
                "+task_options.distractors={kind:moving,num_videos:4,seed_offset:1}",
            ],
        )
    assert walker.exp_name == reach.exp_name == "distracted"
    assert walker.task.options == {
        "fast_render": False,
        "distractors": {"kind": "moving", "seed_offset": 0},
    }
    assert walker.eval_episodes == 10  # drqv2_paper still applies
    assert parse_distractors(dict(evaluate.task_options.distractors)) == DistractorOptions(
        num_videos=4, seed_offset=1
    )
    env = build_env(reach.task, reach.env, seed=0)
    assert isinstance(env.unwrapped, ReachEnv) and env.unwrapped._distractor is not None
    env.close()
