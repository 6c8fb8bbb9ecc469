"""The robot-cell scene: a Franka Panda with its gripper on a table, a cube, a target, two cameras.

**Assets.** The arm (``robots/panda/robot.xml``) and the gripper (``grippers/panda_gripper.xml``)
are read at run time from the installed robosuite package's MJCF and meshes, and composed with
``mujoco.MjSpec`` (the gripper attached to the arm's ``right_hand`` flange, the arm to the world).
robosuite's Python model classes are not used, so robosuite is never imported.

**Frames (world = robot base).** The world origin is the Panda's base (``link0``), which sits on
the table top: the table surface is the plane ``z = 0``. ``+x`` points from the robot towards the
front camera (away from the robot, across the table), ``+z`` up, ``+y`` to the robot's left.
Lengths are metres, angles radians, quaternions ``(w, x, y, z)`` as in MuJoCo.

**Changes to robosuite's Panda.** robosuite drives the arm with torque motors under its own OSC
controller. Here the seven torque motors become joint position servos (stiffness ``ARM_KP``,
critically damped, force limits 87 N m on joints 1-4 and 12 N m on 5-7 as on the real arm), the
arm and gripper bodies are gravity compensated (as Franka's controller does), and the joints get a
small rotor armature so that stiff servos stay stable at the 2 ms physics step. The gripper keeps
robosuite's two finger position actuators (1000 N/m, ±20 N).

**Added parts.** ``tcp`` (a site between the finger pads, the tool centre point), a 5 cm cube
on a free joint, the reach target (a mocap sphere that collides with nothing but is drawn), and
the cameras ``front`` (fixed, in front of the table, looking down at the workspace) and ``wrist``
(on the hand, beside the fingers, looking along the gripper's approach axis).

**Visibility.** robosuite puts collision geoms in group 0 and meshes for drawing in group 1;
renderers should hide group 0 and all sites (see ``CellSim.render``). Our own table, cube and
target are in group 2 and drawn.

**MuJoCo Warp (checked on the Warp CPU device, mujoco-warp 3.17.0).** ``mujoco_warp.put_model``
accepts the compiled model (63 meshes, mesh collision geoms, position servos, gravity
compensation, a mocap body); ``robotrl_sim.warp.cell`` runs the cell tasks on batched worlds with
this same model: arm joints within 1e-3 rad of CPU MuJoCo after 100 steps, grasps find the same
finger-pad/cube contact pairs as CPU MuJoCo, and the ray tracer draws the meshes (groups 1, 2).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import numpy as np

# Arm joint names in the composed model, base to flange, and the two finger joints.
ARM_JOINTS = tuple(f"panda/joint{index}" for index in range(1, 8))
FINGER_JOINTS = ("panda/gripper/finger_joint1", "panda/gripper/finger_joint2")
FINGER_ACTUATORS = (
    "panda/gripper/gripper_finger_joint1",
    "panda/gripper/gripper_finger_joint2",
)
ARM_ACTUATORS = tuple(f"panda/servo{index}" for index in range(1, 8))
GRIPPER_BODY = "panda/gripper/right_gripper"
FINGER_PADS = ("panda/gripper/finger1_pad_collision", "panda/gripper/finger2_pad_collision")
TCP_SITE = "tcp"
TCP_OFFSET = 0.0934  # m along the gripper's z axis from the flange: the finger pads' centre
CAMERAS = ("front", "wrist")
# Home posture (rad): elbow up, flange pointing straight down, TCP about 0.45 m in front of the
# base and 0.3 m above the table.
HOME_QPOS = np.array([0.0, 0.0, 0.0, -2.2, 0.0, 2.2, np.pi / 4])
ARM_KP = np.array([4000.0, 4000.0, 3000.0, 3000.0, 1000.0, 800.0, 400.0])  # N m / rad
ARM_FORCE_LIMIT = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])  # N m, Franka's limits
ARM_ARMATURE = 0.1  # kg m², reflected rotor inertia; keeps stiff servos stable at 2 ms
GRIPPER_MAX_WIDTH = 0.08  # m, the Panda hand's full opening (two fingers of 4 cm travel)
CUBE_HALF_SIZE = 0.025  # m (a 5 cm cube)
CUBE_MASS = 0.1  # kg
TABLE_HALF_SIZE = (0.6, 0.6, 0.02)  # m; the table's top is z = 0
TABLE_CENTRE_XY = (0.4, 0.0)
TARGET_RADIUS_DRAWN = 0.02  # m, the drawn target sphere
PHYSICS_TIMESTEP = 0.002  # s
SCENE_GROUP = 2  # geom group of our own drawn geoms

FRONT_CAMERA_POS = np.array([1.25, 0.0, 0.75])
FRONT_CAMERA_LOOK_AT = np.array([0.45, 0.0, 0.05])
FRONT_CAMERA_FOVY = 50.0  # degrees
# Wrist camera in the gripper's frame (z along the fingers, x along their travel).
WRIST_CAMERA_POS = np.array([0.0, 0.1, 0.0])
WRIST_CAMERA_LOOK_AT = np.array([0.0, 0.0, 0.2])
WRIST_CAMERA_FOVY = 75.0


def robosuite_assets() -> Path:
    """The installed robosuite package's ``models/assets`` folder (robosuite is not imported)."""
    found = importlib.util.find_spec("robosuite")
    if found is None or not found.submodule_search_locations:
        raise ImportError(
            "the robot cell loads the Panda's MJCF and meshes from robosuite's package data; "
            "install it with: pip install robosuite==1.5.2"
        )
    assets = Path(next(iter(found.submodule_search_locations))) / "models" / "assets"
    if not (assets / "robots" / "panda" / "robot.xml").is_file():
        raise FileNotFoundError(f"robosuite's Panda model is missing under {assets}")
    return assets


def look_at_quat(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Quaternion of a MuJoCo camera at ``position`` looking at ``target`` with ``up`` upwards.

    MuJoCo cameras look along their -z axis with +y up in the image and +x to the right.
    """
    backward = position - target
    backward = backward / np.linalg.norm(backward)
    right = np.cross(up, backward)
    right = right / np.linalg.norm(right)
    image_up = np.cross(backward, right)
    rotation = np.column_stack([right, image_up, backward])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rotation.ravel())
    return quat


def _load_spec(path: Path) -> mujoco.MjSpec:
    spec = mujoco.MjSpec.from_file(str(path))
    # Absolute mesh paths, so the assets resolve wherever the composed spec is compiled.
    for mesh in spec.meshes:
        mesh.file = str(path.parent / mesh.file)
    return spec


def build_spec() -> mujoco.MjSpec:
    """The cell as an uncompiled ``MjSpec`` (for MuJoCo, or ``mujoco_warp`` after compiling)."""
    assets = robosuite_assets()
    arm = _load_spec(assets / "robots" / "panda" / "robot.xml")
    gripper = _load_spec(assets / "grippers" / "panda_gripper.xml")

    arm.body("right_hand").add_frame().attach_body(gripper.body("right_gripper"), "gripper/", "")

    spec = mujoco.MjSpec()
    spec.modelname = "robotrl_cell"
    spec.option.timestep = PHYSICS_TIMESTEP
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.noslip_iterations = 0
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.headlight.ambient = [0.4, 0.4, 0.4]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.visual.global_.offwidth = 64
    spec.visual.global_.offheight = 64
    spec.stat.extent = 1.5
    spec.stat.center = [0.4, 0.0, 0.2]

    world = spec.worldbody
    world.add_light(pos=[0.4, 0.0, 2.0], dir=[0, 0, -1], diffuse=[0.5, 0.5, 0.5])
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        pos=[0.4, 0, -0.75],
        size=[3, 3, 0.05],
        rgba=[0.3, 0.32, 0.36, 1],
        group=SCENE_GROUP,
    )
    half_x, half_y, half_z = TABLE_HALF_SIZE
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        pos=[TABLE_CENTRE_XY[0], TABLE_CENTRE_XY[1], -half_z],
        size=[half_x, half_y, half_z],
        rgba=[0.55, 0.45, 0.35, 1],
        friction=[1.0, 0.005, 0.0001],
        group=SCENE_GROUP,
    )
    front = world.add_camera(name="front", pos=FRONT_CAMERA_POS, fovy=FRONT_CAMERA_FOVY)
    front.quat = look_at_quat(FRONT_CAMERA_POS, FRONT_CAMERA_LOOK_AT, np.array([0.0, 0, 1]))

    cube = world.add_body(name="cube", pos=[0.5, 0.0, CUBE_HALF_SIZE])
    cube.add_freejoint(name="cube")
    cube.add_geom(
        name="cube",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[CUBE_HALF_SIZE] * 3,
        mass=CUBE_MASS,
        rgba=[0.85, 0.15, 0.15, 1],
        friction=[1.0, 0.005, 0.0001],
        condim=4,
        group=SCENE_GROUP,
    )
    target = world.add_body(name="target", mocap=True, pos=[0.5, 0.0, 0.2])
    target.add_geom(
        name="target",
        type=mujoco.mjtGeom.mjGEOM_SPHERE,
        size=[TARGET_RADIUS_DRAWN, 0, 0],
        rgba=[0.1, 0.85, 0.25, 1],
        contype=0,
        conaffinity=0,
        group=SCENE_GROUP,
    )
    world.add_frame().attach_body(arm.body("base"), "panda/", "")
    hand = spec.body(GRIPPER_BODY)
    # The TCP: between the finger pads' centres, on the gripper's approach axis.
    hand.add_site(name=TCP_SITE, pos=[0, 0, TCP_OFFSET], size=[0.005, 0, 0], group=4)
    wrist = hand.add_camera(name="wrist", pos=WRIST_CAMERA_POS, fovy=WRIST_CAMERA_FOVY)
    wrist.quat = look_at_quat(WRIST_CAMERA_POS, WRIST_CAMERA_LOOK_AT, np.array([1.0, 0, 0]))

    # Torque motors → joint position servos; gravity compensation on every robot body.
    for actuator in list(spec.actuators):
        if actuator.name.startswith("panda/torq_"):
            spec.delete(actuator)
    for index, joint_name in enumerate(ARM_JOINTS):
        joint = spec.joint(joint_name)
        joint.armature = ARM_ARMATURE
        servo = spec.add_actuator(name=f"panda/servo{index + 1}", target=joint_name)
        servo.trntype = mujoco.mjtTrn.mjTRN_JOINT
        servo.set_to_position(kp=float(ARM_KP[index]), dampratio=1.0)
        servo.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        servo.ctrlrange = joint.range
        servo.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        servo.forcerange = [-ARM_FORCE_LIMIT[index], ARM_FORCE_LIMIT[index]]
    for body in spec.bodies:
        if body.name.startswith("panda/"):
            body.gravcomp = 1.0
    # robosuite's force/torque sensors on the gripper are not used here.
    for sensor in list(spec.sensors):
        spec.delete(sensor)
    return spec


def build_model() -> mujoco.MjModel:
    """The compiled cell model."""
    return build_spec().compile()
