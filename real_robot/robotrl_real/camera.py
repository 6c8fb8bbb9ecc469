"""The driver's cameras: one :class:`CameraStream` (DDS publishers) per camera, and the camera
thread's loop that renders, encodes and publishes frames.

Each camera publishes ``/cameras/<name>/image_raw/compressed`` (JPEG or PNG,
``sensor_msgs/CompressedImage``) at ``DriverConfig.camera_hz`` and a latched
``/cameras/<name>/camera_info`` with the backend's pinhole intrinsics. A stream can be killed on
its own (:meth:`CameraStream.kill`, a dead camera node, for tests); the others keep going.
:class:`~robotrl_real.driver.DriverNode` owns the streams and runs :func:`camera_loop` in its
camera thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from robotrl_real import msgs
from robotrl_real.arm import ArmBackend
from robotrl_real.node import Node

logger = logging.getLogger(__name__)


class CameraSettings(Protocol):
    """What the cameras take from the driver's config (``DriverConfig`` has these fields)."""

    camera_hz: float
    camera_size: int
    image_format: str  # "jpeg" or "png"
    jpeg_quality: int


def encode_image(rgb: NDArray[np.uint8], image_format: str, jpeg_quality: int = 90) -> bytes:
    """An RGB frame as JPEG or PNG bytes."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if image_format == "jpeg":
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {rgb.shape} frame as {image_format}")
    return buffer.tobytes()


class CameraStream:
    """One camera's publishers (``image_raw/compressed`` and latched ``camera_info``).

    :meth:`kill` deletes its DDS writers, as if the camera node died; the others keep going.
    """

    def __init__(
        self, node: Node, camera: str, backend: ArmBackend, config: CameraSettings
    ) -> None:
        self.camera = camera
        self._config = config
        self._image = node.publisher(f"/cameras/{camera}/image_raw/compressed")
        self._info = node.publisher(f"/cameras/{camera}/camera_info")
        self.alive = True
        self.frames_published = 0
        size = config.camera_size
        fx, fy, cx, cy = backend.camera_intrinsics(camera, size, size)
        self._info.publish(
            msgs.CameraInfo(
                header=msgs.stamped_header(f"{camera}_camera_optical_frame"),
                height=size,
                width=size,
                distortion_model="plumb_bob",
                d=[0.0] * 5,
                k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
                r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            )
        )

    def publish(self, rgb: NDArray[np.uint8]) -> None:
        """Encode and publish one frame (nothing once killed)."""
        if not self.alive:
            return
        data = encode_image(rgb, self._config.image_format, self._config.jpeg_quality)
        self._image.publish(
            msgs.CompressedImage(
                header=msgs.stamped_header(f"{self.camera}_camera_optical_frame"),
                format=self._config.image_format,
                data=data,
            )
        )
        self.frames_published += 1

    def kill(self) -> None:
        """Stop publishing and delete this camera's DDS writers."""
        self.alive = False
        for publisher in (self._image, self._info):
            publisher._writer.__del__()  # the writer leaves the domain now, not at GC time


def camera_loop(
    streams: Mapping[str, CameraStream],
    backend: ArmBackend,
    config: CameraSettings,
    stop: threading.Event,
) -> None:
    """The camera thread: every ``1 / config.camera_hz`` s, render each live stream's frame with
    ``backend.camera_frame`` and publish it, until ``stop`` is set; a camera that fails is logged
    and skipped for that frame. A loop that falls more than a period behind restarts its clock
    instead of catching up. On exit the backend frees this thread's camera resources."""
    period = 1.0 / config.camera_hz
    size = config.camera_size
    next_frame = time.monotonic()
    try:
        while not stop.is_set():
            for stream in list(streams.values()):
                if not stream.alive:
                    continue
                try:
                    stream.publish(backend.camera_frame(stream.camera, size, size))
                except Exception:
                    logger.exception("camera %s failed", stream.camera)
            next_frame += period
            now = time.monotonic()
            if now > next_frame + period:
                next_frame = now
            stop.wait(max(0.0, next_frame - now))
    finally:
        backend.close_cameras()
