"""``robotrl-robot``: run the driver node for one arm until Ctrl-C.

    robotrl-robot --backend sim --namespace arm --control-hz 50 --domain-id 7

``--loopback`` keeps DDS on 127.0.0.1 (tests, a laptop); otherwise Cyclone DDS uses
``CYCLONEDDS_URI`` or its defaults. Vendor backends need ``--host``. SIGINT and SIGTERM stop the
loop, hold the arm, and leave the DDS domain.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from robotrl_real.backends import BACKENDS, MissingDependencyError, make_backend
from robotrl_real.driver import DriverConfig, DriverNode
from robotrl_real.node import loopback_config
from robotrl_real.safety import SafetyConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robotrl-robot", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="sim")
    parser.add_argument("--namespace", default="robot")
    parser.add_argument("--control-hz", type=float, default=None, help="default: the backend's")
    parser.add_argument("--domain-id", type=int, default=None, help="default: ROS_DOMAIN_ID or 0")
    parser.add_argument("--host", default="", help="the arm's IP address (vendor backends)")
    parser.add_argument("--camera-size", type=int, default=64)
    parser.add_argument("--camera-hz", type=float, default=15.0)
    parser.add_argument("--loopback", action="store_true", help="DDS on 127.0.0.1 only")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many s")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    options: dict[str, object] = {}
    if args.control_hz is not None:
        options["control_hz"] = args.control_hz
    if args.backend != "sim":
        options["host"] = args.host
    try:
        backend = make_backend(args.backend, **options)
    except (MissingDependencyError, ValueError) as error:
        print(f"robotrl-robot: {error}", file=sys.stderr)
        return 2
    safety = SafetyConfig()
    if args.backend == "sim":  # inside the sim twin's own box (x >= 0.3, z <= 0.45)
        safety = SafetyConfig(workspace_min=(0.3, -0.3, 0.02), workspace_max=(0.75, 0.3, 0.45))
    config = DriverConfig(
        namespace=args.namespace,
        safety=safety,
        camera_size=args.camera_size,
        camera_hz=args.camera_hz,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    driver = DriverNode(
        backend,
        config,
        domain_id=args.domain_id,
        dds_config=loopback_config() if args.loopback else None,
    )
    with driver:
        logging.info(
            "driver %s running in namespace /%s at %.0f Hz; Ctrl-C stops",
            backend.name,
            args.namespace,
            1.0 / driver.period,
        )
        stop.wait(args.duration)
    logging.info("driver stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
