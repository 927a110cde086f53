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

A submission's cells are sweep cells (``aem_bench.sweep``): the encoder becomes a row of the
sweep, trained and evaluated by the sweep's code in the sweep's cache, on the demonstrations
every row of the protocol trains on. Nothing is recorded or trained twice, and the built-in
default encoder submitted is the sweep's ``singleframe-dp`` row itself. What submitting adds is
the encoder's check before any work, the claim on its checkpoint folder (another submission's
is refused, not resumed) and the ``submission`` field.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aem_bench.errors import InputError, UsageError, read_json
from aem_bench.policies import encoders
from aem_bench.progress import progress_write
from aem_bench.recipe import PROTOCOLS, SMOKE, Protocol, get_protocol
from aem_bench.sweep import ROWS, Cell, Row, Sweep, default_cache

__all__ = ["PROTOCOLS", "SMOKE", "Protocol", "get_protocol", "submit"]


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
    """A file-name-safe form of an encoder reference."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _as_json(options: dict) -> dict:
    """Options as a config saves them: a tuple and a list of the same values are one option."""
    return json.loads(json.dumps(options))


def submission_row(protocol: Protocol, encoder: SubmittedEncoder, options: dict,
                   built_options: dict) -> Row:
    """The sweep row a submission is: the protocol's policy with its encoder replaced, named
    ``ENCODER-HEAD`` (``tiny-dp``), so that its cells are the sweep's, in the sweep's cache.

    The policy's own encoder at its default options (``built_options``, as built) replaces
    nothing: that submission is the sweep's row of the policy itself (``singleframe-dp``), the
    very same cells, trained once whichever of the two asks first."""
    from aem_bench.policies import POLICIES

    plain = ROWS.get(protocol.policy)
    default = POLICIES[protocol.policy]["encoder"]
    if (plain is not None and not plain.overrides and plain.encoder_from is None
            and plain.aem_ablation is None and encoder.name == default
            and _as_json(built_options) == _as_json(
                encoders.make_encoder(default, load_weights=False).options)):
        return plain
    name = f"{_safe(encoder.name)}-{protocol.head}"
    if name in ROWS:  # its cache folder is that row's checkpoint, of another policy
        raise UsageError("encoder", f"a submission of '{encoder.name}' would be the sweep's row "
                         f"'{name}' ({ROWS[name].description}); register the encoder under "
                         "another name")
    return Row(name, protocol.policy, {"encoder": encoder.name, "encoder_options": options},
               description=f"the submitted encoder {encoder.reference}")


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


def claim_checkpoint(checkpoint: Path, submission: dict) -> bool:
    """Mark ``checkpoint`` as this submission's; return whether it already was (so its training
    and evaluation carry on where they stopped).

    A directory of another submission under the same name (the encoder's code, options or the
    protocol changed since) is refused rather than resumed: its weights were not trained on
    this encoder."""
    path = checkpoint / SUBMISSION_FILE
    if path.is_file():
        recover = f"move {checkpoint} away, or pass another --cache, to start afresh"
        saved = read_json(path, recover)
        if not isinstance(saved, dict):
            raise InputError(f"{path}: damaged (not a JSON object); {recover}")
        changed = sorted(key for key in submission
                         if key != "encoder_ref" and saved.get(key) != submission[key])
        if changed:
            raise InputError(f"{checkpoint} holds another submission (it differs in {changed}); "
                             f"move that directory away, or pass another --cache, to start afresh")
        return True
    checkpoint.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(submission, indent=2) + "\n")
    return False


RESULTS_DIR = "runs/submit/results"  # where a submission's results files go unless told


def submit(
    encoder_ref: str,
    protocol: Protocol | str = "standard",
    cache: str | os.PathLike | None = None,
    encoder_options: dict | None = None,
    progress: bool = True,
    results_dir: str | os.PathLike | None = None,
    command: str | None = None,
) -> list[Path]:
    """Run ``protocol`` for an encoder and write one leaderboard results file per task and scene.

    The submission is a sweep row (:func:`submission_row`) whose cells the sweep's code makes in
    the sweep's cache (``cache``, default ``runs/sweep/PROTOCOL``): the task's demonstrations
    (``TASK/demos.h5``, the very file every sweep row of the protocol trains on), the checkpoint
    (``TASK/ROW/``, with the evaluation's episode log and :data:`SUBMISSION_FILE`) and, in
    ``results_dir`` (default :data:`RESULTS_DIR`), the sweep's results file of the cell (``ROW_TASK_PROTOCOL.json``) with a
    ``submission`` field. Run again after an interruption, it resumes: training from its last
    saved step, evaluation from its last finished episode. Returns the results files' paths.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    options = dict(encoder_options or {})
    encoder = resolve_encoder(encoder_ref)
    submission, built_options = _checked_submission(encoder, protocol, options)
    row = submission_row(protocol, encoder, options, built_options)
    sweep = Sweep(protocol, Path(cache) if cache is not None else default_cache(protocol),
                  Path(results_dir or RESULTS_DIR), progress=progress, command=command)
    _say(progress, f"submitting encoder '{encoder.name}' ({submission['class']}) under the "
         f"'{protocol.name}' protocol as the sweep row '{row.name}' in {sweep.cache}: "
         f"{len(protocol.tasks)} task(s)")
    return [_submit_cell(sweep, Cell(row, task, scene), submission)
            for task in protocol.tasks for scene in protocol.scenes]


def _say(progress: bool, message: str) -> None:
    if progress:
        progress_write(message)


def _checked_submission(encoder: SubmittedEncoder, protocol: Protocol,
                        options: dict) -> tuple[dict, dict]:
    """The submission's record and the encoder's options as built (defaults included: what
    rebuilds it, whatever the submitter passed), from the encoder built once, as training
    builds it, and checked on blank frames before any work."""
    import torch

    torch.manual_seed(protocol.train_seed)
    built = encoders.make_encoder(encoder.name, **options)
    check_encoder(built, int(0.9 * protocol.camera), encoder.name)  # the policy's default crop
    built_options = dict(built.options)
    return _submission(encoder, protocol, built_options, built.fingerprint()), built_options


def _submit_cell(sweep: Sweep, cell: Cell, submission: dict) -> Path:
    """Train and evaluate one of the submission's cells with the sweep's code; its results
    file, the sweep's with the ``submission`` field."""
    from aem_bench.leaderboard.results import validate_result
    from aem_bench.policies import load_policy

    sweep = sweep.for_task(cell.task)  # a cell shared with another protocol is made as its
    started = time.perf_counter()
    checkpoint = sweep.checkpoint_dir(cell.task, cell.row)
    if claim_checkpoint(checkpoint, submission):
        _say(sweep.progress, f"{cell.task}: resuming the submission saved in {checkpoint}")
    sweep.checkpoint(cell.task, cell.row)
    trained_at = time.perf_counter()
    # Evaluated as saved, as anyone would load it: the checkpoint round trip is tested too.
    report = sweep.evaluate_cell(cell)
    result = {**report.to_dict(), "submission": {
        **submission,
        "trained_fingerprint": load_policy(checkpoint).encoder.fingerprint(),
        "demos": str(sweep.demos_file(cell.task)),
        "checkpoint": str(checkpoint),
        "train_minutes": round((trained_at - started) / 60, 2),
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }}
    path = cell.results_file(sweep.results_dir, sweep.protocol)
    validate_result(result, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    _say(sweep.progress, f"{cell.eval_task}: success {report.successes}/{len(report.records)}; "
         f"written to {path}")
    return path
