"""Metric logging for training and evaluation: CSV always, TensorBoard by default, W&B optional.

One `Logger` per run directory. Each split ("train", "eval") gets its own tidy CSV with a
`frame` column followed by metric columns in the order they first appeared, and the same
numbers go to TensorBoard under `"{split}/{name}"` at global step `frame`.

Resuming from a checkpoint at frame F: build a new `Logger` on the same run directory and call
`truncate_after(F)`. Rows the killed run wrote after F are dropped from the CSVs, and TensorBoard
is told to hide its events after F, so the re-done frames are not shown twice.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FRAME_COLUMN = "frame"
DEFAULT_SPLITS = ("train", "eval")
WANDB_ID_FILE = "wandb_run_id.txt"


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`.

    Readers (TensorBoard, a plotting script, a resumed run) never see a half-written file. The
    temporary name keeps the suffix because some writers (ffmpeg, matplotlib) pick the format
    from it. On error the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    tmp_path = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


class _SplitCsv:
    """One split's CSV file: appends rows, widens the header when new metrics appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = [FRAME_COLUMN]
        if path.exists():
            self._load_existing()

    def _load_existing(self) -> None:
        text = self.path.read_text()
        rows = list(csv.reader(io.StringIO(text, newline="")))
        # A run killed mid-write can leave a partial last line; appending after it would glue two
        # rows together, so drop it.
        complete = text.endswith("\n")
        if not complete:
            rows = rows[:-1]
        if rows:
            self.columns = rows[0]
            if self.columns[0] != FRAME_COLUMN:
                raise ValueError(
                    f"{self.path} is not a logger CSV: its first column is not {FRAME_COLUMN!r}"
                )
        if not complete or not rows:
            self._rewrite(rows[1:])

    def _read_rows(self) -> list[list[str]]:
        with open(self.path, newline="") as handle:
            return list(csv.reader(handle))

    def _rewrite(self, body: list[list[str]]) -> None:
        with atomic_write(self.path) as tmp_path, open(tmp_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            for row in body:
                writer.writerow(row + [""] * (len(self.columns) - len(row)))

    def append(self, frame: int, metrics: Mapping[str, float]) -> None:
        new_columns = [name for name in metrics if name not in self.columns]
        if new_columns or not self.path.exists():
            old_body = self._read_rows()[1:] if self.path.exists() else []
            self.columns.extend(new_columns)
            self._rewrite(old_body)
        row = [str(frame)] + [_format_value(metrics.get(name)) for name in self.columns[1:]]
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow(row)

    def truncate_after(self, frame: int) -> None:
        if not self.path.exists():
            return
        body = self._read_rows()[1:]
        kept = [row for row in body if row and float(row[0]) <= frame]
        if len(kept) != len(body):
            self._rewrite(kept)


def _format_value(value: float | None) -> str:
    if value is None:
        return ""
    # repr() round-trips floats exactly and writes NaN/inf as "nan"/"inf", which pandas reads back.
    return repr(value)


class Logger:
    """Logs scalar metrics per split to CSV, TensorBoard (default) and Weights & Biases (opt-in).

    Args:
        run_dir: the run directory; CSVs go to `run_dir/{split}.csv`, TensorBoard to `run_dir/tb`.
        tensorboard: write TensorBoard event files.
        wandb: also log to W&B (needs `pip install robotrl[wandb]`). The W&B run id is kept in
            the run directory so a resumed run continues the same W&B run.
        wandb_project: W&B project name.
        config: the run's resolved config, shown in TensorBoard's text tab and W&B.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str | None = None,
        config: dict | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._config = config
        self._splits: dict[str, _SplitCsv] = {}
        self._use_tensorboard = tensorboard
        # The TensorBoard writer is created on first use, so that a resumed run can first tell it
        # (through truncate_after) which old events to hide.
        self._tb_writer: Any = None
        self._tb_purge_step: int | None = None
        self._wandb_run: Any = self._start_wandb(wandb_project) if wandb else None

    def log(self, split: str, metrics: Mapping[str, float], *, frame: int) -> None:
        """Record `metrics` for `split` ("train" or "eval") at environment frame `frame`.

        Non-finite values are logged as they are: a NaN loss is information, not a crash.
        """
        if FRAME_COLUMN in metrics:
            raise ValueError(f"{FRAME_COLUMN!r} is the name of the frame column; rename the metric")
        values = {name: float(value) for name, value in metrics.items()}
        self._split(split).append(frame, values)
        if self._use_tensorboard:
            writer = self._tensorboard()
            for name, value in values.items():
                writer.add_scalar(f"{split}/{name}", value, global_step=frame)
        if self._wandb_run is not None:
            wandb_values: dict[str, float] = {f"{split}/{k}": v for k, v in values.items()}
            self._wandb_run.log({**wandb_values, FRAME_COLUMN: frame})

    def truncate_after(self, frame: int, splits: list[str] | None = None) -> None:
        """Forget everything logged after `frame` (call when resuming from a checkpoint there).

        CSV rows with a larger frame are deleted from every split file ("train", "eval" and any
        split logged through this logger), or from `splits` only. TensorBoard events are hidden
        from the viewer by a purge marker at `frame + 1` (not for `splits`). W&B cannot delete
        history; its steps are keyed by `frame`, so re-done frames simply appear again.
        """
        for split in splits if splits is not None else {*DEFAULT_SPLITS, *self._splits}:
            self._split(split).truncate_after(frame)
        if self._use_tensorboard and splits is None:
            if self._tb_writer is not None:
                self._tb_writer.close()
                self._tb_writer = None
            self._tb_purge_step = frame + 1

    def close(self) -> None:
        """Flush and close TensorBoard and W&B. CSV rows are already on disk after each `log`."""
        if self._tb_writer is not None:
            self._tb_writer.close()
            self._tb_writer = None
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _split(self, split: str) -> _SplitCsv:
        if split not in self._splits:
            if not split.isidentifier():
                raise ValueError(
                    f"split must be a plain name such as 'train' or 'eval', got {split!r}"
                )
            self._splits[split] = _SplitCsv(self.run_dir / f"{split}.csv")
        return self._splits[split]

    def _tensorboard(self) -> Any:
        if self._tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb_writer = SummaryWriter(
                log_dir=str(self.run_dir / "tb"), purge_step=self._tb_purge_step
            )
            if self._config is not None:
                config_text = json.dumps(self._config, indent=2, default=str)
                # Indented by four spaces so TensorBoard's markdown shows it as a code block.
                self._tb_writer.add_text(
                    "config", "    " + config_text.replace("\n", "\n    "), global_step=0
                )
        return self._tb_writer

    def _start_wandb(self, project: str | None) -> Any:
        try:
            import wandb
        except ImportError as error:
            raise ModuleNotFoundError(
                "Logger(wandb=True) needs the wandb package: pip install robotrl[wandb]",
                name="wandb",
            ) from error
        id_file = self.run_dir / WANDB_ID_FILE
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            id_file.write_text(run_id + "\n")
        run = wandb.init(
            project=project,
            dir=str(self.run_dir),
            config=self._config,
            id=run_id,
            resume="allow",
        )
        # Plot every metric against environment frames rather than W&B's own call counter.
        run.define_metric(FRAME_COLUMN)
        run.define_metric("*", step_metric=FRAME_COLUMN)
        return run
