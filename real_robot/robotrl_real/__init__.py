"""Real-robot side of robotrl.

So far: ROS 2 message types spoken over DDS without a ROS install (:mod:`robotrl_real.msgs`),
the driver's topic table with names and QoS (:mod:`robotrl_real.topics`), a minimal node that
publishes and subscribes those topics (:mod:`robotrl_real.node`), and the safety layer every
command passes through (:mod:`robotrl_real.safety`). The driver node, vendor SDK adapters,
teleop devices and episode recording arrive with later parts of the real-robot issue. The
package is kept separate so a robot PC can install ``robotrl`` + ``robotrl-real`` without any
simulator.
"""

__version__ = "0.1.0"
