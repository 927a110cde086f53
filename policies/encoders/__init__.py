"""Image encoders of the policy zoo, one interface, open to encoders from other packages.

The interface
-------------
An encoder is a subclass of :class:`Encoder` (a ``torch.nn.Module``) that turns camera frames into
one feature vector per frame::

    encoder(images)  # uint8 (N, H, W, 3), already cropped -> float (N, encoder.feature_dim)

- **Input**: RGB frames as the camera gives them, uint8, channels last, already cropped by the
  policy (random crops while training, the centre crop at run time; ``crop_size`` is 90% of the
  camera side unless the config says otherwise). ``N`` mixes batch and time: the policy folds its
  observation window into ``N``. The encoder does its own preprocessing (scaling, resizing,
  normalisation, :func:`preprocess` for the usual case), so that any encoder fits any head and any
  task.
- **Output**: float features ``(N, feature_dim)``; set ``self.feature_dim`` in ``__init__``, the
  head is sized from it before any frame is seen.
- **Options**: keyword arguments of ``__init__``, JSON values only. Pass them all to
  ``super().__init__(**options)``: they are saved in the policy's ``config.json``
  (``encoder_options``), rebuild the encoder when a checkpoint is loaded, and enter
  :meth:`Encoder.fingerprint`.
- **Weights**: ``pretrained = False`` (the default; the ResNet): trained from scratch with the
  head, saved in the checkpoint. ``pretrained = True`` (DINOv2, CLIP, R3M): the encoder brings
  weights of its own and ``__init__`` takes ``load_weights: bool`` (False when a checkpoint is
  about to overwrite them, so skip the download or the read); it is frozen by default
  (``freeze_encoder`` in the config overrides), and its features are computed once per dataset
  and cached (``feature_cache.py``, keyed by ``fingerprint()``).
- **State**: none. An encoder is a function of one frame: the policy may call it on any frames in
  any order and batch them as it likes. Memory of the past belongs to the policy: ``obs_horizon``
  stacks the features of the last k frames (``framestack-*``), and AEM's history encoder
  (``modeling_aem.HistoryEncoder``) is a recurrent memory: ``initial_state(batch)`` gives its
  recurrent state, ``forward(tokens, state)``/``step(token, state)`` return outputs and the next
  state, and the policy resets that state in ``reset()`` and carries it from step to step (or
  re-reads a window of recent steps). An encoder that wants a recurrent state of its own is
  therefore a memory, not an image encoder: submit its per-frame part here, and the recurrent
  part as the memory of a policy like ``aem-*`` (its history encoder) or ``gru-*``.

Registration
------------
Built-in encoders register with :func:`register_encoder`; a policy config names its encoder
(``encoder``) and passes ``encoder_options`` through :func:`make_encoder`.

Other packages register theirs through the ``aem_bench.encoders`` entry-point group, one entry
point per encoder, ``name = "package.module:Class"``::

    [project.entry-points."aem_bench.encoders"]
    tiny = "aem_bench_tiny_encoder:TinyEncoder"

Entry points are loaded lazily: when :func:`make_encoder` meets a name it does not know (so a
checkpoint naming ``tiny`` loads wherever the package is installed), and by
:func:`installed_encoders`. A name with a colon, ``"package.module:Class"``, is an import
reference and is resolved the same way, for encoders of packages without an entry point.
``examples/aem_bench_tiny_encoder`` is a package to copy.

Layout and layer
----------------
``base`` (the interface and the registry), one module per built-in encoder (``resnet``,
``dinov2``, ``clip``, ``r3m``) and ``weights`` (finding pretrained weights offline). Part of the
policy zoo: encoders import torch, timm, open_clip and each other, never the rest of the zoo
(a head or a policy), the tasks, the evaluator or anything above.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata

from aem_bench.errors import InputError, UsageError

# The base lives in its own module so that the built-in encoders import it, not this package.
from aem_bench.policies.encoders.base import (  # noqa: F401  (the package's interface)
    ENCODERS,
    Encoder,
    preprocess,
    register_encoder,
)

ENTRY_POINT_GROUP = "aem_bench.encoders"


class EncoderLoadError(InputError):
    """An encoder from another package (entry point or import reference) cannot be used."""


@dataclass(frozen=True)
class EncoderSource:
    """Where a registered encoder comes from, for listings and a submission's provenance."""

    reference: str  # "package.module:Class"
    distribution: str | None = None  # the installed distribution that provides it, if known
    version: str | None = None
    entry_point: str | None = None  # its name in the aem_bench.encoders group, if it has one


@dataclass(frozen=True)
class EncoderInfo:
    """One line of :func:`installed_encoders`: an encoder, or an entry point that failed."""

    name: str
    source: EncoderSource
    builtin: bool
    pretrained: bool | None  # None: the entry point did not load
    error: str | None = None


_SOURCES: dict[str, EncoderSource] = {}  # encoders registered from entry points or references


def class_reference(cls: type) -> str:
    """``package.module:Class``, the string that imports ``cls`` again."""
    return f"{cls.__module__}:{cls.__qualname__}"


def distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """(name, version) of the installed distribution that provides a module; (None, None) for a
    module on the path that no installed distribution claims."""
    top = module_name.partition(".")[0]
    # The built-ins' answer without scanning every installed distribution (seconds in a venv).
    names = (["aem-bench"] if top == "aem_bench"
             else metadata.packages_distributions().get(top, []))
    try:
        return (names[0], metadata.version(names[0])) if names else (None, None)
    except metadata.PackageNotFoundError:  # aem-bench run from a source tree, not installed
        return None, None


def _require_encoder_class(obj, what: str) -> type[Encoder]:
    if not (isinstance(obj, type) and issubclass(obj, Encoder)):
        raise EncoderLoadError(f"{what} is {obj!r}, not a subclass of "
                               "aem_bench.policies.encoders.Encoder")
    return obj


def import_encoder(reference: str) -> type[Encoder]:
    """The :class:`Encoder` subclass that ``"package.module:Class"`` names (not registered)."""
    module_name, colon, qualname = reference.partition(":")
    if not (colon and module_name and qualname):
        raise EncoderLoadError(f"encoder reference {reference!r} is not of the form "
                               "'package.module:Class'")
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # third-party code may fail at import in any way
        raise EncoderLoadError(f"encoder reference {reference!r}: importing '{module_name}' "
                               f"failed: {type(err).__name__}: {err}") from err
    for attribute in qualname.split("."):
        if not hasattr(obj, attribute):
            raise EncoderLoadError(f"encoder reference {reference!r}: '{module_name}' has no "
                                   f"attribute '{qualname}'")
        obj = getattr(obj, attribute)
    return _require_encoder_class(obj, f"encoder reference {reference!r}")


def _register(name: str, cls: type[Encoder], source: EncoderSource) -> type[Encoder]:
    # The same class may come twice (an entry point whose module also uses register_encoder).
    if ENCODERS.get(name, cls) is not cls:
        raise EncoderLoadError(f"encoder '{name}' from {source.reference} clashes with the "
                               f"registered encoder {class_reference(ENCODERS[name])}")
    ENCODERS[name] = cls
    _SOURCES[name] = source
    return cls


def installed_entry_points() -> dict[str, metadata.EntryPoint]:
    """The ``aem_bench.encoders`` entry points of the installed distributions, by name, not
    loaded."""
    return {point.name: point for point in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_entry_point(point: metadata.EntryPoint) -> type[Encoder]:
    """Import an entry point's class and register it under the entry point's name."""
    dist = point.dist
    where = (f"encoder entry point '{point.name} = {point.value}' (group {ENTRY_POINT_GROUP}) "
             f"of distribution {f'{dist.name} {dist.version}' if dist else '(unknown)'}")
    try:
        cls = point.load()
    except Exception as err:  # third-party code may fail at import in any way
        raise EncoderLoadError(f"{where} failed to load: {type(err).__name__}: {err}") from err
    source = EncoderSource(point.value, dist.name if dist else None,
                           dist.version if dist else None, point.name)
    return _register(point.name, _require_encoder_class(cls, where), source)


def encoder_class(name: str) -> type[Encoder]:
    """The class registered as ``name``: a built-in, an installed entry point (loaded on first
    use) or a ``package.module:Class`` reference (imported on first use)."""
    if name in ENCODERS:
        return ENCODERS[name]
    if ":" in name:
        cls = import_encoder(name)
        return _register(name, cls, EncoderSource(name, *distribution_of(cls.__module__)))
    points = installed_entry_points()
    if name not in points:
        raise UsageError("encoder", f"unknown encoder '{name}'; registered: {sorted(ENCODERS)}, "
                         f"installed through entry points: {sorted(points)}; or give "
                         "'package.module:Class'")
    return _load_entry_point(points[name])


def encoder_source(name: str) -> EncoderSource:
    """Where the registered encoder ``name`` comes from."""
    cls = encoder_class(name)
    if name in _SOURCES:
        return _SOURCES[name]
    return EncoderSource(class_reference(cls), *distribution_of(cls.__module__))


def installed_encoders() -> list[EncoderInfo]:
    """Every built-in encoder and every ``aem_bench.encoders`` entry point, by name; an entry
    point that fails to load (or clashes with a registered name) is listed with its error
    instead of stopping the listing."""
    failed = []
    for name, point in installed_entry_points().items():
        try:
            _load_entry_point(point)
        except EncoderLoadError as err:
            dist = point.dist
            source = EncoderSource(point.value, dist.name if dist else None,
                                   dist.version if dist else None, name)
            failed.append(EncoderInfo(name, source, builtin=False, pretrained=None,
                                      error=str(err)))
    loaded = [EncoderInfo(name, encoder_source(name), name in BUILTIN_ENCODERS, cls.pretrained)
              for name, cls in ENCODERS.items()]
    return sorted(loaded + failed, key=lambda info: (info.name, info.error is not None))


def make_encoder(name: str, load_weights: bool = True, **options) -> Encoder:
    """Build encoder ``name`` with ``options``. ``load_weights=False`` skips reading a pretrained
    encoder's weights, for when a checkpoint is about to overwrite them anyway."""
    cls = encoder_class(name)
    try:
        return cls(load_weights=load_weights, **options) if cls.pretrained else cls(**options)
    except TypeError as err:
        raise UsageError("encoder_options", f"{options} for encoder '{name}': {err}") from None


def build_encoder(config, load_weights: bool = True) -> tuple[Encoder, bool]:
    """The encoder a config names (``encoder``, ``encoder_options``, ``freeze_encoder``) and
    whether it is frozen: pretrained encoders are unless ``freeze_encoder`` says otherwise."""
    encoder = make_encoder(config.encoder, load_weights=load_weights, **config.encoder_options)
    frozen = encoder.pretrained if config.freeze_encoder is None else config.freeze_encoder
    encoder.requires_grad_(not frozen)
    return encoder, frozen


# Register the built-in encoders (imported for their decorators).
from aem_bench.policies.encoders import clip, dinov2, r3m, resnet  # noqa: F401

BUILTIN_ENCODERS = frozenset(ENCODERS)
