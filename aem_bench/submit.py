"""Submitting an encoder: the fixed protocol that turns an image encoder into leaderboard results.

A submission changes one thing, the image encoder; everything else is fixed by a :class:`Protocol`
so that two submissions differ only by their encoders: the same expert demonstrations (same
tasks, count, seeds, camera), the same action head and training recipe (zoo policy
``singleframe-dp`` with its ``encoder`` replaced, same steps, batch size, seed and threads) and
the same evaluation (same episodes on the same expert-solvable seeds).

:func:`submit` runs it for an encoder given as a registered name (a built-in, or an installed
``aem_bench.encoders`` entry point) or as ``package.module:Class``, and writes one results file
per task that ``aem_bench.leaderboard.results.validate_result`` accepts, with a ``submission``
field saying what was submitted (reference, class, distribution and version, options,
fingerprints) under which protocol (its name and every parameter).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aem_bench.errors import InputError, read_json
from aem_bench.policies import encoders
from aem_bench.progress import progress_write
from aem_bench.recipe import PROTOCOLS, SMOKE, STANDARD, Protocol, get_protocol

__all__ = ["PROTOCOLS", "SMOKE", "STANDARD", "Protocol", "get_protocol", "submit"]


@dataclass(frozen=True)
class SubmittedEncoder:
    """An encoder resolved from a submission's reference: its registered name and origin."""

    reference: str  # as given: a registered name or "package.module:Class"
    name: str  # the name policy configs use; a checkpoint names it to load the encoder again
    cls: type[encoders.Encoder]
    source: encoders.EncoderSource


def resolve_encoder(reference: str) -> SubmittedEncoder:
    """Import ``package.module:Class`` or look up a registered or installed name, and register it.

    A reference to the class of an installed entry point is registered under the entry point's
    name, so that its checkpoints load wherever the package is installed."""
    name = reference
    if ":" in reference:
        encoders.import_encoder(reference)  # a bad reference fails here, with its own message
        for point in encoders.installed_entry_points().values():
            if point.value == reference:
                name = point.name
    cls = encoders.encoder_class(name)
    return SubmittedEncoder(reference, name, cls, encoders.encoder_source(name))


def check_encoder(encoder: encoders.Encoder, crop: int, name: str) -> None:
    """Call the encoder once on two blank frames and check what comes back: a broken interface
    should fail here, not after an hour of demonstrations and training."""
    import torch

    images = torch.zeros(2, crop, crop, 3, dtype=torch.uint8)
    problem = None
    if not isinstance(getattr(encoder, "feature_dim", None), int):
        problem = "it sets no integer feature_dim"
    else:
        try:
            with torch.no_grad():
                features = encoder.eval()(images)
        except Exception as err:  # the submitter's code: report any failure as bad input
            raise encoders.EncoderLoadError(
                f"encoder '{name}' failed on uint8 frames (2, {crop}, {crop}, 3): "
                f"{type(err).__name__}: {err}") from err
        expected = (2, encoder.feature_dim)
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            problem = f"it returned {type(features).__name__}, not a float tensor"
        elif tuple(features.shape) != expected:
            problem = f"it returned shape {tuple(features.shape)}, not (N, feature_dim) {expected}"
        elif not torch.isfinite(features).all():
            problem = "it returned non-finite features"
    if problem:
        raise encoders.EncoderLoadError(f"encoder '{name}' breaks the Encoder interface: "
                                        f"{problem}")


def _safe(text: str) -> str:
    """A file-name-safe form of a task id or an encoder reference."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def record_demos(task: str, protocol: Protocol, cache_dir: Path, progress: bool = True) -> Path:
    """The protocol's demonstrations of ``task``: recorded once, reused while the file matches."""
    from aem_bench.demos import DemoFileError, load_demos
    from aem_bench.expert import record_demos as record_expert_demos

    camera = (protocol.camera, protocol.camera)
    path = cache_dir / (f"{_safe(task)}_{protocol.demos}demos_{protocol.camera}px_"
                        f"seed{protocol.demo_seed}.h5")
    if path.is_file():
        try:
            cached = load_demos(path)
        except DemoFileError:
            cached = None  # damaged: record again
        if (cached is not None and cached.env_id == task
                and cached.env_kwargs.get("camera_size") == list(camera)
                and len(cached.episodes) == protocol.demos):
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    record_expert_demos(task, protocol.demos, path, seed=protocol.demo_seed, progress=progress,
                        camera_size=camera)
    return path


def _submission(encoder: SubmittedEncoder, protocol: Protocol, options: dict,
                fingerprint: str) -> dict:
    source = encoder.source
    distribution = (None if source.distribution is None
                    else {"name": source.distribution, "version": source.version})
    return {
        "encoder_ref": encoder.reference,
        "encoder": encoder.name,
        "class": encoders.class_reference(encoder.cls),
        "entry_point": source.entry_point,
        "distribution": distribution,
        "encoder_options": options,
        "pretrained": encoder.cls.pretrained,
        "fingerprint": fingerprint,  # as built (seeded with train_seed), before training
        "protocol": protocol.to_dict(),
    }


SUBMISSION_FILE = "submission.json"  # in a checkpoint directory: whose training it holds
EVAL_LOG = "eval.jsonl"  # in a checkpoint directory: the episodes evaluated so far


def claim_checkpoint(checkpoint: Path, submission: dict) -> bool:
    """Mark ``checkpoint`` as this submission's; return whether it already was (so its training
    and evaluation carry on where they stopped).

    A directory of another submission under the same name (the encoder's code, options or the
    protocol changed since) is refused rather than resumed: its weights were not trained on
    this encoder."""
    path = checkpoint / SUBMISSION_FILE
    if path.is_file():
        recover = f"move {checkpoint} away, or pass another --out, to start afresh"
        saved = read_json(path, recover)
        if not isinstance(saved, dict):
            raise InputError(f"{path}: damaged (not a JSON object); {recover}")
        changed = sorted(key for key in submission
                         if key != "encoder_ref" and saved.get(key) != submission[key])
        if changed:
            raise InputError(f"{checkpoint} holds another submission (it differs in {changed}); "
                             f"delete that directory, or pass another --out, to start afresh")
        return True
    checkpoint.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(submission, indent=2) + "\n")
    return False


def submit(
    encoder_ref: str,
    protocol: Protocol | str = STANDARD,
    out_dir: str | os.PathLike = "runs/submit",
    encoder_options: dict | None = None,
    progress: bool = True,
    results_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """Run ``protocol`` for an encoder and write one leaderboard results file per task.

    ``out_dir`` holds the demonstrations (``demos/``, recorded once and shared by every
    submission that uses the same ``out_dir``), a checkpoint per task
    (``checkpoints/PROTOCOL/ENCODER_TASK``, with the evaluation's episode log) and, unless
    ``results_dir`` says otherwise, the results files (``results/``). Run again after an
    interruption, it resumes: training from its last saved step, evaluation from its last
    finished episode. Returns the results files' paths.
    """
    import torch

    from aem_bench.evaluator import evaluate
    from aem_bench.leaderboard.results import validate_result
    from aem_bench.policies import load_policy
    from aem_bench.policies.training import train

    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    options = dict(encoder_options or {})
    out_dir = Path(out_dir)
    results_dir = Path(results_dir) if results_dir is not None else out_dir / "results"
    encoder = resolve_encoder(encoder_ref)

    def say(message: str) -> None:
        if progress:
            progress_write(message)

    torch.manual_seed(protocol.train_seed)
    built = encoders.make_encoder(encoder.name, **options)
    check_encoder(built, int(0.9 * protocol.camera), encoder.name)  # the policy's default crop
    # Its options as built, defaults included: what rebuilds it, whatever the submitter passed.
    submission = _submission(encoder, protocol, dict(built.options), built.fingerprint())
    del built
    say(f"submitting encoder '{encoder.name}' ({submission['class']}) under the "
        f"'{protocol.name}' protocol: {len(protocol.tasks)} task(s)")

    written = []
    for task in protocol.tasks:
        started = time.perf_counter()
        demos = record_demos(task, protocol, out_dir / "demos", progress)
        checkpoint = (out_dir / "checkpoints" / protocol.name
                      / f"{_safe(encoder.name)}_{_safe(task)}")
        if claim_checkpoint(checkpoint, submission):
            say(f"{task}: resuming the submission saved in {checkpoint}")
        train(protocol.policy, demos, checkpoint, steps=protocol.train_steps,
              batch_size=protocol.batch_size, seed=protocol.train_seed,
              config_overrides={"encoder": encoder.name, "encoder_options": options},
              num_threads=protocol.threads, progress=progress, resume=True)
        trained_at = time.perf_counter()
        # Evaluated as saved, as anyone would load it: the checkpoint round trip is tested too.
        torch.set_num_threads(protocol.threads)
        policy = load_policy(checkpoint)
        report = evaluate(policy, task, protocol.eval_episodes, seed=protocol.eval_seed,
                          env_kwargs={"camera_size": (protocol.camera, protocol.camera)},
                          progress=progress, policy_name=f"{encoder.name}-{protocol.head} "
                          f"({protocol.name} protocol)", encoder=encoder.name, head=protocol.head,
                          log=checkpoint / EVAL_LOG)
        result = {**report.to_dict(), "submission": {
            **submission,
            "trained_fingerprint": policy.encoder.fingerprint(),
            "demos": demos.name,
            "checkpoint": str(checkpoint),
            "train_minutes": round((trained_at - started) / 60, 2),
            "minutes": round((time.perf_counter() - started) / 60, 2),
        }}
        path = results_dir / f"{_safe(encoder.name)}-{protocol.head}_{_safe(task)}_" \
                             f"{protocol.name}.json"
        validate_result(result, source=str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        say(f"{task}: success {report.successes}/{len(report.records)}; written to {path}")
        written.append(path)
    return written
