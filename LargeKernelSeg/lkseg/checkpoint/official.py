"""Importing weights trained with the official repositories (3D UX-Net, RepUX-Net,
DeformUX-Net, MedNeXt) into native checkpoints.

Official files are ``torch.save``'d state dicts, raw or nested in a training dict. They are read
with ``torch.load(weights_only=True)`` only, so no code in them runs; key names are mapped by
the architecture module's ``official_to_lkseg`` where it has one, and the result is checked
strictly against the network the card describes.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from lkseg.checkpoint.card import CheckpointError, ModelCard
from lkseg.checkpoint.native import (
    build_from_card,
    check_state_dict,
    file_sha256,
    save_checkpoint,
)
from lkseg.errors import LkSegError

log = logging.getLogger(__name__)

__all__ = ["import_official", "OFFICIAL_STATE_KEYS"]

#: keys under which training scripts commonly nest the model weights
OFFICIAL_STATE_KEYS = ("state_dict", "model", "network_weights", "model_state_dict", "net")


def _torch_load_weights(src: Path) -> Any:
    if src.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(src))
        except Exception as exc:
            raise CheckpointError(f"{src} is not a readable safetensors file ({exc})") from None
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only" in text.lower() or "weights_only" in text.lower():
            reason = _unsafe_reason(text)
            raise CheckpointError(
                f"{src} holds Python objects besides tensors ({reason}); lkseg never unpickles arbitrary objects. "
                "Re-save only the weights, e.g. torch.save(model.state_dict(), 'weights.pth'), and import that"
            ) from None
        raise CheckpointError(f"{src} is not a readable PyTorch weights file (corrupt or another format: "
                              f"{text.splitlines()[0] if text else 'unpickling failed'})") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, IndexError... on foreign or truncated files
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{src} is not a readable PyTorch weights file (truncated or another format: "
                              f"{text[:200]})") from None


def _unsafe_reason(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("WeightsUnpickler error:", "Unsupported global:")):
            return line.split(". Please")[0].split(" was not an allowed")[0][:200]
    return "unsupported content"


def _extract_state_dict(obj: Any, src: Path) -> dict[str, torch.Tensor]:
    """The weights inside a loaded ``.pth``: a raw state dict or one nested under a usual key."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        nested = next((obj[k] for k in OFFICIAL_STATE_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if nested is None:
            break
        obj = nested
    if isinstance(obj, Mapping):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return tensors
        keys = ", ".join(map(str, list(obj)[:10]))
        raise CheckpointError(f"{src}: no weights found; expected a state dict or one under "
                              f"{', '.join(OFFICIAL_STATE_KEYS)} (top-level keys: {keys})")
    raise CheckpointError(f"{src}: no weights found; the file holds a {type(obj).__name__}, not a state dict")


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):  # DataParallel/DDP, torch.compile
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _official_mapping(card: ModelCard) -> tuple[Callable[..., dict] | None, dict[str, Any]]:
    """The architecture module's ``official_to_lkseg`` (or None) and the full configuration."""
    from lkseg.models.registry import get_spec

    try:
        spec = get_spec(card.architecture)
    except KeyError:
        return None, {}  # build_from_card reports the unknown architecture
    module = sys.modules.get(spec.constructor.__module__)
    fn = getattr(module, "official_to_lkseg", None)
    return (fn if callable(fn) else None), {**spec.paper_config, **card.hyperparameters}


def _with_official_defaults(card: ModelCard) -> ModelCard:
    """The card with the architecture module's ``OFFICIAL_IMPORT_DEFAULTS`` filled in where the
    card is silent (e.g. RepUX-Net: official weights are used as they are, ``deploy=True``)."""
    from dataclasses import replace

    from lkseg.models.registry import get_spec

    try:
        spec = get_spec(card.architecture)
    except KeyError:
        return card  # build_from_card reports the unknown architecture
    defaults = getattr(sys.modules.get(spec.constructor.__module__), "OFFICIAL_IMPORT_DEFAULTS", {})
    missing = {k: v for k, v in defaults.items() if k not in card.hyperparameters}
    if not missing:
        return card
    log.info("importing official %s weights with %s", card.architecture, missing)
    return replace(card, hyperparameters={**card.hyperparameters, **missing})


def _matching_kwargs(fn: Callable, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The card's hyper-parameters that ``fn`` takes as keyword arguments (e.g. ``deep_supervision``)."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in hyperparameters.items() if k in names}


def import_official(src: str | os.PathLike, card: ModelCard, dst: str | os.PathLike,
                    overwrite: bool = False) -> Path:
    """Turn official weights ``src`` (``.pth``/``.pt``/``.safetensors``) plus ``card`` into checkpoint ``dst``.

    The weights are read with ``torch.load(weights_only=True)`` (never unpickling arbitrary
    objects), taken from a raw state dict or from under one of :data:`OFFICIAL_STATE_KEYS`,
    stripped of ``module.`` prefixes, renamed by the architecture module's
    ``official_to_lkseg(state_dict) -> state_dict`` when it has one, and checked strictly
    against the network the card describes. The card's provenance notes the source file name
    and its sha256.
    """
    from dataclasses import replace

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CheckpointError(f"official weights {src} do not exist; check the path")
    if dst.exists() and not overwrite:
        raise CheckpointError(f"{dst} already exists; choose another output or allow overwriting (--force)")
    if dst.resolve() == src.resolve():
        raise CheckpointError(f"output {dst} is the input file; choose another output")
    state = _strip_prefix(_extract_state_dict(_torch_load_weights(src), src))
    card = _with_official_defaults(card)
    model = build_from_card(card, src)
    mapping, config = _official_mapping(card)
    if mapping is not None:
        names = set(model.state_dict())
        if not set(state) <= names:  # already-native names pass through unchanged
            try:
                state = mapping(state, **_matching_kwargs(mapping, config))
            except (KeyError, ValueError, LkSegError) as exc:
                raise CheckpointError(f"{src}: cannot map official weight names onto {card.architecture!r}: "
                                      f"{exc}") from None
    check_state_dict(model, state, card, src)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{src}: the weights do not load into {card.architecture!r}: {exc}") from None
    digest = file_sha256(src)
    note = f"imported from {src.name} (sha256 {digest})"
    notes = f"{card.provenance.notes}; {note}" if card.provenance.notes else note
    card = replace(card, provenance=replace(card.provenance, notes=notes))
    save_checkpoint(dst, model.state_dict(), card)
    log.info("imported %s -> %s", src, dst)
    return dst

