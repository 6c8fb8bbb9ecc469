"""Real-robot side of robotrl.

Only the installable skeleton exists so far: the ROS 2-compatible driver node, the safety layer
and teleop devices arrive with the real-robot issue. The package is kept separate so a robot PC
can install ``robotrl`` + ``robotrl-real`` without any simulator.
"""

__version__ = "0.1.0"
