"""Console progress bar for long runs: frames done, frames/s over a recent window, ETA, stats."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class _OneLinePerRefresh:
    """File wrapper for logs (CI, Slurm): each tqdm refresh becomes one plain line.

    tqdm redraws in place with carriage returns, which a log file shows as one endless line.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.encoding = getattr(stream, "encoding", "utf-8")

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


class ProgressBar:
    """A tqdm bar over environment frames, for training and evaluation loops.

    The frames/s shown is measured over the last `window_seconds`, so a run resumed at a late
    frame, or one that slowed down after warm-up, shows its current speed and a matching ETA.

    On a terminal the bar redraws in place at most every 0.5 s; elsewhere (CI logs, Slurm output)
    it prints one plain line at most every 60 s. Pass `mininterval` to override either.

    Args:
        total_frames: the frame count at which the run ends.
        initial_frame: where the run starts (non-zero after a resume).
        description: the label in front of the bar.
        window_seconds: how far back the frames/s measurement looks.
        file: where to draw; standard error by default.
        disable: draw nothing (e.g. for the workers of a sweep).
        clock: seconds as a float; tests pass a fake clock.
    """

    def __init__(
        self,
        total_frames: int,
        initial_frame: int = 0,
        *,
        description: str = "train",
        window_seconds: float = 30.0,
        mininterval: float | None = None,
        file: TextIO | None = None,
        disable: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        stream = file if file is not None else sys.stderr
        is_terminal = hasattr(stream, "isatty") and stream.isatty()
        if mininterval is None:
            mininterval = 0.5 if is_terminal else 60.0
        self._clock = clock
        self._window_seconds = window_seconds
        self._samples: deque[tuple[float, int]] = deque([(clock(), initial_frame)])
        self._stats: dict[str, str] = {}
        self._stream: TextIO | _OneLinePerRefresh = (
            stream if is_terminal else _OneLinePerRefresh(stream)
        )
        self._bar = tqdm(
            total=total_frames,
            initial=initial_frame,
            desc=description,
            unit="frame",
            unit_scale=True,
            bar_format=_BAR_FORMAT,
            mininterval=mininterval,
            file=self._stream,
            ascii=not is_terminal,
            dynamic_ncols=is_terminal,
            disable=disable,
        )

    @property
    def frames_per_second(self) -> float | None:
        """Frames per second over the recent window; None until two updates are apart in time."""
        (first_time, first_frame), (last_time, last_frame) = self._samples[0], self._samples[-1]
        elapsed = last_time - first_time
        return (last_frame - first_frame) / elapsed if elapsed > 0 else None

    def update(self, frame: int, **stats: float) -> None:
        """Move the bar to `frame` and show `stats` (e.g. `episode_return=812.3`) after it; each
        stat stays shown until a later update gives it a new value."""
        now = self._clock()
        self._samples.append((now, frame))
        # Keep at least two samples so there is always a rate, however slow the updates come.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_seconds:
            self._samples.popleft()
        postfix = {}
        fps = self.frames_per_second
        if fps is not None and fps > 0:
            postfix["fps"] = f"{fps:.0f}" if fps >= 10 else f"{fps:.2f}"
            remaining = max(0, (self._bar.total or 0) - frame) / fps
            postfix["eta"] = tqdm.format_interval(remaining)
        self._stats.update({name: _short(value) for name, value in stats.items()})
        postfix.update(self._stats)
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(frame - self._bar.n)

    def write(self, message: str) -> None:
        """Print a line without breaking the bar."""
        tqdm.write(message, file=self._stream)

    def close(self) -> None:
        """Draw the final state and release the line."""
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _short(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
