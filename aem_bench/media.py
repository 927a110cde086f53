"""Pictures for people: contact sheets of tasks and rollout videos (GIF or MP4)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_HEIGHT = 14  # pixels of caption under each tile (Pillow's default bitmap font)


def contact_sheet(tiles: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str],
                  column_labels: Sequence[str]) -> Image.Image:
    """A grid of equally sized RGB images with a caption per row and a header per column."""
    if not tiles or not tiles[0]:
        raise ValueError("contact_sheet needs at least one row and one column of images")
    height, width = tiles[0][0].shape[:2]
    label_width = 8 + 7 * max(len(label) for label in row_labels)
    sheet = Image.new("RGB", (label_width + width * len(column_labels),
                              LABEL_HEIGHT + height * len(tiles)), "white")
    draw = ImageDraw.Draw(sheet)
    for col, label in enumerate(column_labels):
        draw.text((label_width + col * width + 4, 1), label, fill="black")
    for row, (images, label) in enumerate(zip(tiles, row_labels, strict=True)):
        top = LABEL_HEIGHT + row * height
        draw.text((4, top + height // 2 - 6), label, fill="black")
        for col, image in enumerate(images):
            sheet.paste(Image.fromarray(image), (label_width + col * width, top))
    return sheet


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: int = 20) -> Path:
    """Write RGB frames as a video; the suffix picks the format.

    ``.gif`` loops and plays in any browser and on GitHub (Pillow); ``.mp4`` (H.264, through
    imageio's ffmpeg) is a tenth of the size for long episodes.
    """
    if not frames:
        raise ValueError("write_video needs at least one frame")
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: videos are .gif or .mp4, not {path.suffix or 'no suffix'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mp4":
        import imageio.v2 as imageio

        # macro_block_size=1: frames of any size (the default pads to multiples of 16, noisily).
        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
        return path
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=False)
    return path
