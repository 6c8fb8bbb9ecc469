"""A minimal ROS 2-compatible node: one DDS participant, publishers and subscriptions by topic name.

``Node`` joins the DDS domain ``ROS_DOMAIN_ID`` (default 0, as ROS 2 does) and makes publishers
and subscriptions from a :class:`~robotrl_real.topics.TopicTable`, so a topic's type and QoS
come from one place and nobody picks QoS by hand::

    with Node("learner", namespace="arm") as node:
        poses = node.subscription("tcp_pose")               # polling: poses.take()
        node.subscription("/joint_states", callback=print)  # or a callback
        twist = node.publisher("/servo_node/delta_twist_cmds")
        twist.publish(TwistStamped(header=stamped_header("base")))

A stock ROS 2 node (``ros2 topic echo /arm/tcp_pose``) sees what we publish and we see what it
publishes. What ROS 2 has and this node does not: a ROS graph entry (``ros2 node list`` will not
show it), parameters, services, actions, ``/rosout``, ``use_sim_time``. Only topics.

Callbacks run on a Cyclone DDS receive thread: keep them short, and guard shared state.

For tests, :func:`loopback_config` and :func:`free_domain_id` keep DDS traffic on 127.0.0.1 (no
multicast, unicast discovery) in a domain of its own, so parallel test workers and a real robot
on the same network never see each other's messages; :func:`loopback_environment` sets the same
through ``CYCLONEDDS_URI``/``ROS_DOMAIN_ID`` for subprocesses.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from cyclonedds.core import (
    DDSException,
    InstanceState,
    Listener,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from robotrl_real.topics import TopicSpec, TopicTable, driver_topics

logger = logging.getLogger(__name__)

#: The largest domain id the standard RTPS port mapping allows (7400 + 250 * id must fit a port).
MAX_DOMAIN_ID = 232


def default_domain_id() -> int:
    """``ROS_DOMAIN_ID`` from the environment, or 0 (ROS 2's default)."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return 0
    try:
        return _check_domain_id(int(raw))
    except ValueError:
        raise ValueError(
            f"ROS_DOMAIN_ID must be an integer in 0..{MAX_DOMAIN_ID}, got {raw!r}"
        ) from None


def _check_domain_id(domain_id: int) -> int:
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f"DDS domain id must be in 0..{MAX_DOMAIN_ID}, got {domain_id}")
    return domain_id


def loopback_config(max_participants: int = 32) -> str:
    """A Cyclone DDS XML config that keeps all traffic on 127.0.0.1 with unicast discovery.

    The loopback interface has no multicast, so discovery goes by unicast to the ports of
    participant indices ``0..max_participants-1`` on localhost; more participants than that in
    one domain on one machine cannot join.
    """
    return (
        '<CycloneDDS xmlns="https://cdds.io/config"><Domain id="any">'
        "<General><Interfaces>"
        '<NetworkInterface address="127.0.0.1"/>'
        "</Interfaces><AllowMulticast>false</AllowMulticast></General>"
        "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{max_participants - 1}</MaxAutoParticipantIndex>"
        '<Peers><Peer address="127.0.0.1"/></Peers></Discovery>'
        "</Domain></CycloneDDS>"
    )


def free_domain_id(low: int = 100, high: int = MAX_DOMAIN_ID) -> int:
    """A random domain id in ``[low, high]`` away from ROS 2's default 0, for one test.

    Random (seeded from the OS, not the test's seed) so parallel test workers rarely share one;
    with 133 ids two workers collide with probability under 1%.
    """
    return random.SystemRandom().randint(_check_domain_id(low), _check_domain_id(high))


@contextmanager
def loopback_environment(domain_id: int | None = None) -> Iterator[int]:
    """Set ``CYCLONEDDS_URI`` (loopback config) and ``ROS_DOMAIN_ID`` while inside; yield the id.

    For code that creates participants without a ``config`` (a subprocess, another library).
    Cyclone DDS reads ``CYCLONEDDS_URI`` when a domain is first created in a process, so set it
    before the first participant of that domain.
    """
    domain_id = free_domain_id() if domain_id is None else _check_domain_id(domain_id)
    saved = {key: os.environ.get(key) for key in ("CYCLONEDDS_URI", "ROS_DOMAIN_ID")}
    os.environ["CYCLONEDDS_URI"] = loopback_config()
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    try:
        yield domain_id
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DomainRegistry:
    """Domains created with an explicit config, shared by the nodes of this process.

    Cyclone DDS allows one domain instance per id in a process; the second node on the same id
    must reuse it, with the same config. The domain is deleted when its last node closes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._domains: dict[int, tuple[Domain, str, int]] = {}

    def acquire(self, domain_id: int, config: str) -> Domain:
        with self._lock:
            if domain_id in self._domains:
                domain, existing, users = self._domains[domain_id]
                if existing != config:
                    raise ValueError(
                        f"DDS domain {domain_id} already exists in this process with another "
                        "config; use the same config for every node of a domain"
                    )
                self._domains[domain_id] = (domain, existing, users + 1)
                return domain
            domain = Domain(domain_id, config)
            self._domains[domain_id] = (domain, config, 1)
            return domain

    def release(self, domain_id: int) -> None:
        with self._lock:
            domain, config, users = self._domains[domain_id]
            if users > 1:
                self._domains[domain_id] = (domain, config, users - 1)
                return
            del self._domains[domain_id]
        _delete(domain)


_DOMAINS = _DomainRegistry()


def _delete(entity: Any) -> None:
    """Delete a Cyclone DDS entity now rather than whenever the garbage collector gets to it."""
    entity.__del__()


class Publisher:
    """Publishes one topic's messages with the topic's QoS."""

    def __init__(self, spec: TopicSpec, writer: DataWriter) -> None:
        self.spec = spec
        self._writer = writer

    def publish(self, message: IdlStruct) -> None:
        """Send ``message``; it must be the topic's type."""
        if not isinstance(message, self.spec.message_type):
            raise TypeError(
                f"topic {self.spec.name} carries {self.spec.message_type.__name__}, "
                f"got {type(message).__name__}"
            )
        self._writer.write(message)

    @property
    def matched_count(self) -> int:
        """How many subscriptions (any process) currently match this publisher."""
        return len(self._writer.get_matched_subscriptions())

    def wait_for_subscribers(self, count: int = 1, timeout: float = 2.0) -> bool:
        """Wait up to ``timeout`` seconds until ``count`` subscriptions match; whether they did."""
        return _poll(lambda: self.matched_count >= count, timeout)


class Subscription:
    """Receives one topic's messages; take them by polling, or get a callback per message."""

    def __init__(self, spec: TopicSpec, reader: DataReader, waitset: WaitSet) -> None:
        self.spec = spec
        self._reader = reader
        self._waitset = waitset

    def take(self, max_messages: int = 256) -> list[Any]:
        """The messages received since the last take, oldest first (empty if none)."""
        samples = self._reader.take(N=max_messages)
        return [s for s in samples if isinstance(s, self.spec.message_type)]

    def take_latest(self) -> Any | None:
        """The newest message received since the last take, or ``None``; older ones are dropped."""
        messages = self.take()
        return messages[-1] if messages else None

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until a message is ready to take; whether one is."""
        return self._waitset.wait(duration(seconds=max(timeout, 0.0))) > 0

    def wait_for_message(self, timeout: float) -> Any | None:
        """The first message that arrives within ``timeout`` seconds (taken), or ``None``."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.take(max_messages=1)
            if messages:
                return messages[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.wait(remaining):
                messages = self.take(max_messages=1)
                return messages[0] if messages else None

    @property
    def matched_count(self) -> int:
        """How many publishers (any process) currently match this subscription."""
        return len(self._reader.get_matched_publications())

    def wait_for_publishers(self, count: int = 1, timeout: float = 2.0) -> bool:
        """Wait up to ``timeout`` seconds until ``count`` publishers match; whether they did."""
        return _poll(lambda: self.matched_count >= count, timeout)


def _poll(condition: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


class Node:
    """One DDS participant that publishes and subscribes the topics of a :class:`TopicTable`.

    Args:
        name: the node's name (used in log messages; there is no ROS graph).
        namespace: resolves relative topic names (``tcp_pose`` -> ``/<namespace>/tcp_pose``).
        topics: the topic table; default :func:`~robotrl_real.topics.driver_topics` of
            ``namespace``.
        domain_id: the DDS domain; default ``ROS_DOMAIN_ID`` or 0.
        config: a Cyclone DDS XML config for the domain (e.g. :func:`loopback_config`); default
            whatever ``CYCLONEDDS_URI`` says.
    """

    def __init__(
        self,
        name: str,
        *,
        namespace: str = "robot",
        topics: TopicTable | None = None,
        domain_id: int | None = None,
        config: str | None = None,
    ) -> None:
        self.name = name
        self.topics = driver_topics(namespace) if topics is None else topics
        self.domain_id = default_domain_id() if domain_id is None else _check_domain_id(domain_id)
        self._config = config
        if config is not None:
            _DOMAINS.acquire(self.domain_id, config)
        try:
            self._participant = DomainParticipant(self.domain_id)
        except DDSException:
            if config is not None:
                _DOMAINS.release(self.domain_id)
            raise
        self._dds_topics: dict[str, Topic] = {}
        self._keep: list[Any] = []  # listeners and waitsets must outlive their readers
        self._closed = False

    def _topic(self, spec: TopicSpec) -> Topic:
        if spec.name not in self._dds_topics:
            self._dds_topics[spec.name] = Topic(
                self._participant, spec.dds_name, spec.message_type, qos=spec.qos
            )
        return self._dds_topics[spec.name]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"node {self.name!r} is closed")

    def publisher(self, topic: str) -> Publisher:
        """A publisher for ``topic`` (absolute, or relative to the namespace) with its table QoS."""
        self._check_open()
        spec = self.topics[topic]
        writer = DataWriter(self._participant, self._topic(spec), qos=spec.qos)
        return Publisher(spec, writer)

    def subscription(
        self, topic: str, callback: Callable[[Any], None] | None = None
    ) -> Subscription:
        """A subscription to ``topic``; a ``callback`` gets each message as it arrives.

        With a callback, messages are taken as they arrive and ``take()`` returns nothing.
        """
        self._check_open()
        spec = self.topics[topic]
        listener = None
        if callback is not None:
            listener = Listener(on_data_available=_dispatcher(spec, callback, self.name))
            self._keep.append(listener)
        reader = DataReader(self._participant, self._topic(spec), qos=spec.qos, listener=listener)
        waitset = WaitSet(self._participant)
        condition = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Alive)
        waitset.attach(condition)
        self._keep += [waitset, condition]
        return Subscription(spec, reader, waitset)

    def close(self) -> None:
        """Leave the domain; publishers and subscriptions of this node stop working."""
        if self._closed:
            return
        self._closed = True
        _delete(self._participant)
        self._keep.clear()
        if self._config is not None:
            _DOMAINS.release(self.domain_id)

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _dispatcher(
    spec: TopicSpec, callback: Callable[[Any], None], node_name: str
) -> Callable[[DataReader], None]:
    def on_data_available(reader: DataReader | None) -> None:
        if reader is None:  # deleted while a notification was in flight: the node is closing
            return
        for sample in reader.take(N=256):
            if not isinstance(sample, spec.message_type):
                continue  # a dispose/unregister notice, not data
            try:
                callback(sample)
            except Exception:  # a DDS thread must not die from a user's callback
                logger.exception("node %r: callback for %s raised", node_name, spec.name)

    return on_data_available
