"""The gallery: a contact sheet of tasks (rows) by scene (columns), each picture the first camera
frame of a seed, and for memory tasks one more, the clean scene once the cue has left the frame.
Imports the registry, ``aem_bench.media`` and the tasks (through gymnasium); nothing above them.
"""

from __future__ import annotations

from pathlib import Path


def write_gallery(base_ids: list[str], out: str | Path, size: int = 128, seed: int = 0) -> int:
    """Render every task of ``base_ids`` in every scene to the image ``out``; the number of
    pictures in a row."""
    import gymnasium as gym

    from aem_bench.media import contact_sheet
    from aem_bench.progress import progress_bar
    from aem_bench.registration import TASKS, VARIANT_SUFFIXES

    with_cue_hidden = any(TASKS[base_id].memory for base_id in base_ids)
    columns = list(VARIANT_SUFFIXES) + (["clean, cue hidden"] if with_cue_hidden else [])
    rows = []
    for base_id in progress_bar(base_ids, desc="gallery", unit="task"):
        row = []
        for scene in VARIANT_SUFFIXES:
            env = gym.make(base_id, scene=scene, camera_size=(size, size))
            obs, _ = env.reset(seed=seed)
            row.append(obs["rgb"])
            if scene == "clean" and with_cue_hidden:
                cue_hidden = _first_frame_without_cue(env, obs)
            env.close()
        rows.append(row + ([cue_hidden] if with_cue_hidden else []))
    sheet = contact_sheet(rows, [i.removeprefix("AEM/").removesuffix("-v0") for i in base_ids],
                          columns)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(columns)


def _first_frame_without_cue(env, obs):
    """Play the expert until the memory task hides its cue; that frame (blank if never)."""
    task = env.unwrapped
    if not task.task_spec.memory:
        return obs["rgb"] * 0
    for action in task.expert():
        obs, *_ = env.step(action)
        if task.cue_hidden_at is not None:
            return obs["rgb"]
    return obs["rgb"] * 0
