"""Per-frame features of a frozen encoder, computed once per dataset and kept on disk.

Training a head on a frozen DINOv2, CLIP or R3M costs the encoder's forward pass over every frame
once, not once per epoch. The cache key is a digest of the encoder (options and every weight),
the crop, and the bytes of the demonstration file, so a changed encoder or changed data misses
the cache and is recomputed; nothing stale can be read.

Location: ``$AEM_CACHE_DIR/features`` (default ``~/.cache/aem_bench/features``), one ``.npy`` per key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from aem_bench.errors import InputError
from aem_bench.progress import progress_bar


def cache_dir() -> Path:
    root = os.environ.get("AEM_CACHE_DIR") or Path.home() / ".cache" / "aem_bench"
    return Path(root) / "features"


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def feature_key(encoder, crop_size: int, demos_path: str | os.PathLike) -> str:
    parts = [encoder.fingerprint(), str(crop_size), file_digest(demos_path)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


@torch.inference_mode()
def frozen_features(encoder, crop_size: int, demos_path: str | os.PathLike, rgb: np.ndarray,
                    batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(N, feature_dim) float32 features of ``rgb`` (N, H, W, 3), the frames of ``demos_path``
    in file order, through ``encoder`` (in eval mode) on centre crops of ``crop_size``; read from
    the cache or computed and cached."""
    from aem_bench.policies.preprocessing import crop_images

    path = cache_dir() / f"{feature_key(encoder, crop_size, demos_path)}.npy"
    if path.is_file():
        try:
            features = np.load(path)
        except (ValueError, OSError, EOFError) as err:  # written atomically: not by a kill
            raise InputError(f"{path}: damaged cache of encoder features ({type(err).__name__}: "
                             f"{err}); delete it (it is computed again)") from None
        if features.shape[0] == len(rgb):
            return features
    was_training = encoder.training
    encoder.eval()
    chunks = [encoder(crop_images(torch.from_numpy(rgb[i : i + batch_size]), crop_size,
                                  random=False)).float().numpy()
              for i in progress_bar(range(0, len(rgb), batch_size), desc="encoder features",
                                    disable=not progress)]
    encoder.train(was_training)
    features = np.concatenate(chunks).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, features)
    partial.replace(path)  # atomic: a reader never sees half a file
    return features
