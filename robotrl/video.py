"""Record evaluation episodes as mp4 videos (H.264 yuv420p: plays in browsers and W&B)."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
from numpy.typing import ArrayLike

from robotrl.logger import atomic_write

# CRF 10 in libx264: near-lossless. RL frames are tiny (64-84 px), so files stay small, and the
# colours of thin features (a pole, a fingertip) survive the compression.
_QUALITY = 8


def to_hwc_rgb(frame: ArrayLike) -> np.ndarray:
    """Convert one observation image to an HxWx3 uint8 array.

    Accepts:
      - HxWx3 (a rendered frame; a trailing axis of size 3 always means channels-last),
      - CxHxW with C a multiple of 3 (a frame stack; the last 3 channels are the newest frame),
      - VxCxHxW (several cameras; their newest frames are placed side by side).
    """
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        raise TypeError(f"video frames must be uint8, got {array.dtype}")
    if array.ndim == 4:
        return np.concatenate([to_hwc_rgb(view) for view in array], axis=1)
    if array.ndim == 3 and array.shape[-1] == 3:
        return array
    if array.ndim == 3 and array.shape[0] % 3 == 0:
        return np.transpose(array[-3:], (1, 2, 0))
    raise ValueError(
        f"cannot read an RGB image from shape {array.shape}: expected HxWx3, CxHxW with C a "
        "multiple of 3, or VxCxHxW"
    )


def _pad_to_even(image: np.ndarray) -> np.ndarray:
    # yuv420p stores colour at half resolution, so H.264 needs even sizes. Repeating the last
    # row/column keeps the picture undistorted, where resizing would blur a 64x64 frame.
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(image)


class VideoRecorder:
    """Collects frames of one episode (or several) in memory and writes them as an mp4.

    Usage: `start()`, `record(frame)` once per step, `save(name)`. `save` with no frames recorded
    since `start()` raises `RuntimeError` (check `num_frames` first if that can happen), because a
    silently missing video is harder to notice than an error.
    """

    def __init__(self, directory: Path, fps: int = 20) -> None:
        self.directory = Path(directory)
        self.fps = fps
        self._frames: list[np.ndarray] = []

    @property
    def num_frames(self) -> int:
        """Frames recorded since the last `start()` or `save()`."""
        return len(self._frames)

    def start(self) -> None:
        """Begin a new clip, discarding frames not yet saved."""
        self._frames = []

    def record(self, frame: ArrayLike) -> None:
        """Append one frame (any layout `to_hwc_rgb` accepts); all frames of a clip share a size."""
        image = to_hwc_rgb(frame)
        if self._frames and image.shape != self._frames[0].shape:
            raise ValueError(
                f"frame shape {image.shape} differs from the clip's {self._frames[0].shape}"
            )
        # Copy: envs often reuse their render buffer between steps.
        self._frames.append(image.copy())

    def save(self, name: str) -> Path:
        """Write the recorded frames to `directory/{name}.mp4` atomically and clear them."""
        if not self._frames:
            raise RuntimeError("VideoRecorder.save() called with no frames recorded since start()")
        if Path(name).name != name:
            raise ValueError(f"video name must be a file name, not a path: {name!r}")
        path = self.directory / (name if name.endswith(".mp4") else f"{name}.mp4")
        self.directory.mkdir(parents=True, exist_ok=True)
        frames = [_pad_to_even(frame) for frame in self._frames]
        height, width = frames[0].shape[:2]
        with atomic_write(path) as tmp_path:
            writer = imageio_ffmpeg.write_frames(
                str(tmp_path),
                size=(width, height),
                fps=self.fps,
                codec="libx264",
                pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p",
                quality=_QUALITY,
                macro_block_size=2,
                # Put the index at the front of the file so browsers can start playing at once.
                output_params=["-movflags", "+faststart"],
            )
            try:
                writer.send(None)
                for frame in frames:
                    writer.send(frame)
            finally:
                writer.close()  # waits for ffmpeg to finish the file
        self._frames = []
        return path
