"""A Franka Panda arm in a raw SAPIEN scene: low-poly visuals, joint-position drives, IK.

The URDF and meshes come from ManiSkill3's wheel. We render the arm with its collision meshes
(about 2.6k triangles per arm) instead of the visual meshes (about 135k): on a CPU renderer the
camera cost grows with triangle count, and this is what brings a dual-arm step with a camera from
~40 ms to a few ms (see BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import sapien

ARM_DOF = 7
# Joint positions with the gripper pointing down in front of the base. ManiSkill's default start
# pose reaches 0.6 m forward, so two arms 1 m apart would start inside each other.
HOME_QPOS = np.array([0.0, -0.6, 0.0, -2.7, 0.0, 2.1, np.pi / 4])
GRIPPER_OPEN = 0.04  # finger joint position (m); the gap between the fingers is twice this
GRIPPER_CLOSED = 0.0
GRIPPER_OPEN_FRACTION = 0.9  # "open" (RoboTwin's release checks): at least 90% of finger travel
# Same drive gains as ManiSkill3's Panda `pd_joint_pos` controller.
ARM_STIFFNESS, ARM_DAMPING, ARM_FORCE_LIMIT = 1e3, 1e2, 100.0
GRIPPER_STIFFNESS, GRIPPER_DAMPING, GRIPPER_FORCE_LIMIT = 1e3, 1e2, 100.0

LINK_COLOURS = {"panda_hand": (0.25, 0.25, 0.27), "panda_leftfinger": (0.25, 0.25, 0.27),
                "panda_rightfinger": (0.25, 0.25, 0.27), "panda_link7": (0.25, 0.25, 0.27)}
DEFAULT_LINK_COLOUR = (0.92, 0.92, 0.92)


def _panda_asset_dir() -> Path:
    # Locate the package without importing it: `import mani_skill` pulls in torch and more.
    spec = importlib.util.find_spec("mani_skill")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mani_skill is not installed; it provides the Panda URDF and meshes")
    return Path(spec.submodule_search_locations[0]) / "assets" / "robots" / "panda"


def lowpoly_panda_urdf() -> Path:
    """Write (once) a Panda URDF whose visuals are its collision shapes, with flat colours."""
    asset_dir = _panda_asset_dir()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aem_bench"
    # One file per installation: the URDF holds absolute mesh paths into that installation.
    tag = hashlib.sha1(str(asset_dir.resolve()).encode()).hexdigest()[:12]
    out = cache / f"panda_lowpoly_v1_{tag}.urdf"
    if out.is_file():
        return out
    root = ET.parse(asset_dir / "panda_v2.urdf").getroot()
    for mesh in root.iter("mesh"):
        mesh.set("filename", str(asset_dir / mesh.get("filename")))
    for link in root.findall("link"):
        for visual in link.findall("visual"):
            link.remove(visual)
        rgb = LINK_COLOURS.get(link.get("name"), DEFAULT_LINK_COLOUR)
        for collision in link.findall("collision"):
            visual = ET.SubElement(link, "visual")
            for child in collision:
                visual.append(copy.deepcopy(child))
            material = ET.SubElement(visual, "material", name=f"{link.get('name')}_colour")
            ET.SubElement(material, "color", rgba=" ".join(map(str, (*rgb, 1.0))))
    cache.mkdir(parents=True, exist_ok=True)
    # Write atomically: parallel workers may build the same file.
    with tempfile.NamedTemporaryFile("w", dir=cache, delete=False, suffix=".urdf") as tmp:
        tmp.write(ET.tostring(root, encoding="unicode"))
    os.replace(tmp.name, out)
    return out


class PandaArm:
    """One Panda with its gripper. Commands and readings use 8 numbers: 7 joints + finger width."""

    def __init__(self, scene: sapien.Scene, base_pose: sapien.Pose, name: str):
        loader = scene.create_urdf_loader()
        loader.fix_root_link = True
        self.name = name
        self.robot = loader.load(str(lowpoly_panda_urdf()))
        self.robot.set_name(name)
        self.robot.set_root_pose(base_pose)
        self.base_pose = base_pose
        self.joints = self.robot.get_active_joints()  # 7 arm joints, then 2 fingers
        for joint in self.joints[:ARM_DOF]:
            joint.set_drive_properties(ARM_STIFFNESS, ARM_DAMPING, ARM_FORCE_LIMIT)
        for joint in self.joints[ARM_DOF:]:
            joint.set_drive_properties(GRIPPER_STIFFNESS, GRIPPER_DAMPING, GRIPPER_FORCE_LIMIT)
        # The real Panda compensates gravity in firmware; here the links simply feel none.
        for link in self.robot.get_links():
            link.disable_gravity = True
        self.links = {link.name: link for link in self.robot.get_links()}
        self.tcp = self.links["panda_hand_tcp"]
        self.fingers = (self.links["panda_leftfinger"], self.links["panda_rightfinger"])
        self._tcp_index = self.robot.get_links().index(self.tcp)
        self._pinocchio = self.robot.create_pinocchio_model()
        limits = self.robot.get_qlimits()  # (9, 2)
        self.low = np.append(limits[:ARM_DOF, 0], GRIPPER_CLOSED).astype(np.float32)
        self.high = np.append(limits[:ARM_DOF, 1], GRIPPER_OPEN).astype(np.float32)

    # --- state -------------------------------------------------------------------------------
    @property
    def qpos(self) -> np.ndarray:
        q = self.robot.get_qpos()
        return np.append(q[:ARM_DOF], q[ARM_DOF:].mean()).astype(np.float32)

    def reset(self, q8: np.ndarray) -> None:
        full = self._expand(q8)
        self.robot.set_qpos(full)
        self.robot.set_qvel(np.zeros_like(full))
        self.set_target(q8)

    def set_target(self, q8: np.ndarray) -> None:
        for joint, target in zip(self.joints, self._expand(q8)):
            joint.set_drive_target(float(target))

    def set_base_height(self, z: float) -> None:
        """Raise or lower the arm's base (the randomized scenes' table-height jitter)."""
        self.base_pose = sapien.Pose([*self.base_pose.p[:2], z], self.base_pose.q)
        self.robot.set_root_pose(self.base_pose)

    @staticmethod
    def _expand(q8: np.ndarray) -> np.ndarray:
        return np.concatenate([q8[:ARM_DOF], [q8[ARM_DOF], q8[ARM_DOF]]]).astype(np.float64)

    @property
    def tcp_pose(self) -> sapien.Pose:
        return self.tcp.entity_pose

    @property
    def is_open(self) -> bool:
        return bool(self.qpos[ARM_DOF] >= GRIPPER_OPEN_FRACTION * GRIPPER_OPEN)

    @property
    def gripper_width(self) -> float:
        return 2.0 * float(self.qpos[ARM_DOF])

    # --- kinematics --------------------------------------------------------------------------
    def inverse_kinematics(self, tcp_pose: sapien.Pose, seed_q7: np.ndarray) -> np.ndarray | None:
        """Joint positions (7,) that put the tool centre point at ``tcp_pose`` (world frame).

        CLIK is a local method: when it does not converge from ``seed_q7`` we retry from the
        home pose, then return the valid solution closest to the seed, or None.
        """
        target = self.base_pose.inv() * tcp_pose
        mask = np.array([1] * ARM_DOF + [0, 0], dtype=np.int32)
        for start in (seed_q7, HOME_QPOS):
            q, ok, _ = self._pinocchio.compute_inverse_kinematics(
                self._tcp_index, target, initial_qpos=np.concatenate([start, [0.0, 0.0]]),
                active_qmask=mask, max_iterations=300,
            )
            q7 = q[:ARM_DOF]
            if ok and np.all(q7 >= self.low[:ARM_DOF]) and np.all(q7 <= self.high[:ARM_DOF]):
                return q7
        return None
