"""Logger (CSV, TensorBoard, W&B error), progress bar, mp4 videos and learning-curve plots."""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

import imageio.v3 as iio
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import robotrl
from robotrl.logger import Logger
from robotrl.plots import plot_learning_curve
from robotrl.progress import ProgressBar
from robotrl.video import VideoRecorder, to_hwc_rgb

# The published DrQ-v2 curves, packaged with robotrl (robotrl/data/reference/drqv2).
REFERENCE_DIR = Path(robotrl.__file__).parent / "data" / "reference" / "drqv2"


def read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def read_scalars(tb_dir: Path, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(tb_dir))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def read_video(path: Path) -> np.ndarray:
    """Decode a whole mp4 with imageio's ffmpeg plugin into an N x H x W x 3 uint8 array."""
    return iio.imread(path, plugin="FFMPEG", index=None)


# --- Logger: CSV ---------------------------------------------------------------------------------


def test_csv_rows_and_header_widening(tmp_path: Path) -> None:
    with Logger(tmp_path, tensorboard=False) as logger:
        logger.log("train", {"actor_loss": 0.5}, frame=100)
        logger.log("train", {"actor_loss": 0.25, "critic_loss": 2.0}, frame=200)
        logger.log("train", {"critic_loss": 1.0}, frame=300)
        logger.log("eval", {"episode_return": 12.5}, frame=300)

    assert read_csv_rows(tmp_path / "train.csv") == [
        ["frame", "actor_loss", "critic_loss"],
        ["100", "0.5", ""],
        ["200", "0.25", "2.0"],
        ["300", "", "1.0"],
    ]
    assert read_csv_rows(tmp_path / "eval.csv") == [["frame", "episode_return"], ["300", "12.5"]]


def test_nan_is_logged_not_raised(tmp_path: Path) -> None:
    with Logger(tmp_path) as logger:
        logger.log("train", {"critic_loss": float("nan"), "q": float("inf")}, frame=10)
    table = pd.read_csv(tmp_path / "train.csv")
    assert math.isnan(table["critic_loss"][0])
    assert table["q"][0] == math.inf
    assert math.isnan(read_scalars(tmp_path / "tb", "train/critic_loss")[0][1])


def test_reserved_frame_name_is_rejected(tmp_path: Path) -> None:
    with Logger(tmp_path, tensorboard=False) as logger, pytest.raises(ValueError, match="frame"):
        logger.log("train", {"frame": 1.0}, frame=1)


def test_truncate_after_drops_later_rows_in_every_split(tmp_path: Path) -> None:
    with Logger(tmp_path, tensorboard=False) as logger:
        for frame in (100, 200, 300, 400):
            logger.log("train", {"loss": frame / 100}, frame=frame)
        for frame in (200, 400):
            logger.log("eval", {"episode_return": frame}, frame=frame)

    # A new process resumes from a checkpoint at frame 200 and re-does frame 300.
    with Logger(tmp_path, tensorboard=False) as resumed:
        resumed.truncate_after(200)
        assert [row[0] for row in read_csv_rows(tmp_path / "train.csv")] == ["frame", "100", "200"]
        assert [row[0] for row in read_csv_rows(tmp_path / "eval.csv")] == ["frame", "200"]
        resumed.log("train", {"loss": 30.0}, frame=300)

    assert read_csv_rows(tmp_path / "train.csv")[1:] == [
        ["100", "1.0"],
        ["200", "2.0"],
        ["300", "30.0"],
    ]


def test_resume_after_a_crash_mid_row_drops_the_partial_line(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("frame,loss\n100,1.0\n200,2.")
    with Logger(tmp_path, tensorboard=False) as logger:
        logger.log("train", {"loss": 3.0}, frame=300)
    assert read_csv_rows(tmp_path / "train.csv") == [
        ["frame", "loss"],
        ["100", "1.0"],
        ["300", "3.0"],
    ]


# --- Logger: TensorBoard and W&B -----------------------------------------------------------------


def test_tensorboard_scalars_are_written_at_frame_steps(tmp_path: Path) -> None:
    with Logger(tmp_path, config={"agent": "drqv2", "lr": 1e-4}) as logger:
        logger.log("train", {"critic_loss": 1.5}, frame=1000)
        logger.log("eval", {"episode_return": 42.0}, frame=2000)

    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert read_scalars(tmp_path / "tb", "train/critic_loss") == [(1000, 1.5)]
    assert read_scalars(tmp_path / "tb", "eval/episode_return") == [(2000, 42.0)]


def test_tensorboard_hides_events_after_the_resume_frame(tmp_path: Path) -> None:
    with Logger(tmp_path) as logger:
        for frame in (100, 200, 300):
            logger.log("train", {"loss": 1.0}, frame=frame)
    with Logger(tmp_path) as resumed:
        resumed.truncate_after(200)
        resumed.log("train", {"loss": 2.0}, frame=300)

    assert read_scalars(tmp_path / "tb", "train/loss") == [(100, 1.0), (200, 1.0), (300, 2.0)]


def test_wandb_without_the_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import wandb` fail even where wandb happens to be installed.
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"pip install robotrl\[wandb\]"):
        Logger(tmp_path, wandb=True)


# --- Progress bar --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_rate_uses_a_recent_window_not_the_resume_point() -> None:
    clock = FakeClock()
    output = io.StringIO()
    bar = ProgressBar(
        1_000_000, initial_frame=500_000, file=output, window_seconds=10.0, clock=clock
    )
    # A burst right after the resume, then a steady 100 frames/s.
    clock.now, frame = 1.0, 510_000
    bar.update(frame)
    for _ in range(30):
        clock.now += 1.0
        frame += 100
        bar.update(frame, episode_return=812.34567)
    assert bar.frames_per_second == pytest.approx(100.0)
    bar.close()

    last_line = output.getvalue().strip().splitlines()[-1]
    assert "\r" not in output.getvalue()  # a log file gets plain lines
    assert "fps=100" in last_line
    assert "episode_return=812.3" in last_line


# --- Videos --------------------------------------------------------------------------------------


# imageio's ffmpeg reader leaves its pipe objects to the garbage collector (a ResourceWarning).
reader_leaks_pipes = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@reader_leaks_pipes
@pytest.mark.parametrize("size", [64, 84])
def test_video_of_a_solid_colour_reads_back(tmp_path: Path, size: int) -> None:
    colour = np.array([200, 40, 90], dtype=np.uint8)
    recorder = VideoRecorder(tmp_path / "videos", fps=10)
    recorder.start()
    for _ in range(12):
        recorder.record(np.broadcast_to(colour, (size, size, 3)))
    path = recorder.save("eval_1000")

    assert path == tmp_path / "videos" / "eval_1000.mp4"
    frames = read_video(path)
    assert frames.shape == (12, size, size, 3)
    # yuv420p and H.264 change colours slightly; a few levels out of 255 is expected.
    np.testing.assert_allclose(frames.reshape(-1, 3).mean(axis=0), colour, atol=6)
    assert not list(path.parent.glob(".*tmp*"))


@reader_leaks_pipes
def test_video_accepts_channel_first_stacks_and_odd_sizes(tmp_path: Path) -> None:
    stacked = np.zeros((9, 21, 33), dtype=np.uint8)
    stacked[-3:] = 255  # the newest frame of the stack is white
    np.testing.assert_array_equal(to_hwc_rgb(stacked), np.full((21, 33, 3), 255, np.uint8))
    two_cameras = np.zeros((2, 3, 21, 33), dtype=np.uint8)
    assert to_hwc_rgb(two_cameras).shape == (21, 66, 3)

    recorder = VideoRecorder(tmp_path, fps=10)
    recorder.start()
    for _ in range(3):
        recorder.record(stacked)
    frames = read_video(recorder.save("odd"))
    assert frames.shape == (3, 22, 34, 3)  # padded to even sizes for yuv420p


def test_video_save_without_frames_is_a_clear_error(tmp_path: Path) -> None:
    recorder = VideoRecorder(tmp_path)
    recorder.start()
    with pytest.raises(RuntimeError, match="no frames"):
        recorder.save("empty")
    assert not list(tmp_path.iterdir())


def test_video_rejects_float_frames(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="uint8"):
        VideoRecorder(tmp_path).record(np.zeros((8, 8, 3), dtype=np.float32))


# --- Plots ---------------------------------------------------------------------------------------


def assert_png_with_content(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    distinct_colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(distinct_colours) > 10


def write_eval_csv(tmp_path: Path, frames: list[int], episodes_per_eval: int) -> Path:
    rng = np.random.default_rng(0)
    with Logger(tmp_path / "run", tensorboard=False) as logger:
        for frame in frames:
            for _ in range(episodes_per_eval):
                logger.log("eval", {"episode_return": frame / 1000 + rng.normal()}, frame=frame)
    return tmp_path / "run" / "eval.csv"


def test_learning_curve_png(tmp_path: Path) -> None:
    eval_csv = write_eval_csv(tmp_path, [0, 10_000, 20_000, 30_000], episodes_per_eval=5)
    out = plot_learning_curve(eval_csv, tmp_path / "plots" / "curve.png", title="reach")
    assert out == tmp_path / "plots" / "curve.png"
    assert_png_with_content(out)


def test_learning_curve_rejects_an_unknown_metric(tmp_path: Path) -> None:
    eval_csv = write_eval_csv(tmp_path, [0, 1000], episodes_per_eval=1)
    with pytest.raises(ValueError, match="success_rate"):
        plot_learning_curve(eval_csv, tmp_path / "curve.png", metric="success_rate")


def test_learning_curve_with_published_reference(tmp_path: Path) -> None:
    eval_csv = write_eval_csv(tmp_path, list(range(0, 200_001, 20_000)), episodes_per_eval=3)
    out = plot_learning_curve(
        eval_csv,
        tmp_path / "cheetah.png",
        title="cheetah_run",
        reference_csv=REFERENCE_DIR / "dmc_cheetah_run.csv",
        reference_task="cheetah_run",
    )
    assert_png_with_content(out)
    with pytest.raises(ValueError, match="walker_walk"):
        plot_learning_curve(
            eval_csv,
            tmp_path / "wrong.png",
            reference_csv=REFERENCE_DIR / "dmc_cheetah_run.csv",
            reference_task="walker_walk",
        )
