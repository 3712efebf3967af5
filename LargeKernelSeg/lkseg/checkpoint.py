"""Native checkpoints: one ``.safetensors`` file whose metadata holds the model card.

Loading never unpickles. Native files are read with safetensors; official ``.pth``/``.pt``
weights are read with ``torch.load(weights_only=True)`` only by :func:`import_official`,
which turns them (plus a model card) into a native checkpoint. Every problem with a file is a
:class:`CheckpointError` whose message names the file and says what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from lkseg.card import CheckpointError, ModelCard
from lkseg.errors import LkSegError

log = logging.getLogger(__name__)

__all__ = ["CheckpointError", "CARD_KEY", "save_checkpoint", "load_checkpoint", "load_state_dict", "read_card",
           "file_sha256", "import_official", "build_from_card", "check_state_dict", "tensor_shapes",
           "OFFICIAL_STATE_KEYS"]

#: safetensors metadata key holding the model card JSON
CARD_KEY = "lkseg_card"
#: keys under which training scripts commonly nest the model weights
OFFICIAL_STATE_KEYS = ("state_dict", "model", "network_weights", "model_state_dict", "net")
_MAX_LISTED = 5


# --------------------------------------------------------------------------- writing
def save_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], card: ModelCard) -> Path:
    """Write ``state_dict`` and ``card`` to ``path`` atomically (temp file, fsync, rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    if not isinstance(card, ModelCard):
        raise TypeError(f"card must be a ModelCard, got {type(card).__name__}")
    tensors = _plain_tensors(state_dict, path)
    metadata = {CARD_KEY: card.to_json(), "format": "pt"}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        # mkstemp creates 0600 files; give the checkpoint the usual readable mode (or keep the old one's)
        os.chmod(tmp, (path.stat().st_mode & 0o777) if path.exists() else 0o644)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    log.info("saved checkpoint %s (%s, %d tensors)", path, card.architecture, len(tensors))
    return path


def _plain_tensors(state_dict: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors that own their storage (safetensors refuses shared memory)."""
    out: dict[str, torch.Tensor] = {}
    storages: dict[int, int] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"cannot save {path}: state-dict entry {key!r} is a {type(value).__name__}, "
                                  "not a tensor")
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        out[key] = t
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            storages[ptr] = storages.get(ptr, 0) + 1
    for key, t in out.items():
        shared = t.numel() and storages.get(t.untyped_storage().data_ptr(), 0) > 1
        partial = t.numel() and t.untyped_storage().nbytes() != t.numel() * t.element_size()
        if shared or partial or not t.is_contiguous():
            out[key] = t.contiguous().clone()
    return out


def _fsync_dir(folder: Path) -> None:
    try:  # make the rename durable (not possible on every platform/file system)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# --------------------------------------------------------------------------- reading
def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the .safetensors file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was not written completely")
    is_safetensors = head[8:9] == b"{"
    is_torch = head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
    if is_torch and not is_safetensors:
        raise CheckpointError(f"{path} is a PyTorch pickle/zip file, not a native lkseg checkpoint; convert it "
                              f"once with `lkseg import {path} --card CARD.json -o model.safetensors`")


def _open_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[list[int], str]]]:
    """Metadata and ``{name: (shape, dtype)}`` from the safetensors header (no tensor data read)."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            shapes = {}
            for k in f.keys():
                sl = f.get_slice(k)
                shapes[k] = (list(sl.get_shape()), str(sl.get_dtype()))
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or not a "
                              f"safetensors file: {exc})") from None
    return metadata, shapes


def _card_from_metadata(metadata: dict[str, str], path: Path) -> ModelCard:
    text = metadata.get(CARD_KEY)
    if text is None:
        raise CheckpointError(f"{path} is a safetensors file without an lkseg model card (no '{CARD_KEY}' "
                              "metadata); import raw weights with `lkseg import WEIGHTS --card CARD.json -o OUT`")
    try:
        return ModelCard.from_json(text)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: bad model card: {exc}") from None


def read_card(path: str | os.PathLike) -> ModelCard:
    """The model card of checkpoint ``path`` (reads only the file header, no tensors)."""
    path = Path(path)
    metadata, _ = _open_header(path)
    return _card_from_metadata(metadata, path)


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[list[int], str]]:
    """``{name: (shape, dtype)}`` of every tensor in checkpoint ``path`` (header only)."""
    return _open_header(Path(path))[1]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (used for provenance: parent checkpoints, imported files)."""
    path = Path(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist; check the path") from None
    return h.hexdigest()


def build_from_card(card: ModelCard, source: str | os.PathLike = "model card") -> nn.Module:
    """Build the card's network (random weights) from the registry."""
    from lkseg.models.registry import UnknownModelError, build_model

    try:
        return build_model(card.architecture, card.in_channels, card.out_channels, **card.hyperparameters)
    except UnknownModelError as exc:
        raise CheckpointError(f"{source}: {exc}; is this checkpoint from a newer lkseg?") from None
    except (TypeError, ValueError, LkSegError) as exc:
        raise CheckpointError(f"{source}: cannot build {card.architecture!r} with {card.in_channels} input "
                              f"channel(s), {card.out_channels} classes and hyper-parameters "
                              f"{card.hyperparameters}: {exc}") from None


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], card: ModelCard,
                     source: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``model``'s keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    _compare(expected, found, card, source)


def _compare(expected: dict[str, tuple], found: dict[str, tuple], card: ModelCard, source: Any) -> None:
    mismatched = [k for k in expected if k in found and expected[k] != found[k]]
    out_ch = card.out_channels
    for k in mismatched:  # the output layer says how many classes the weights were trained for
        e, f = expected[k], found[k]
        if e and f and e[0] == out_ch and f[0] != out_ch and e[1:] == f[1:]:
            raise CheckpointError(
                f"{source}: the label table has {len(card.labels)} labels ({out_ch} classes with background) but "
                f"the weights have {f[0]} output channels ({k} is {list(f)}); use a label table with {f[0] - 1} "
                "labels or the checkpoint trained for these labels")
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing weight(s) ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weight(s) ({_first(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) (" + ", ".join(
            f"{k}: file {list(found[k])}, network {list(expected[k])}" for k in mismatched[:_MAX_LISTED])
            + (", ..." if len(mismatched) > _MAX_LISTED else "") + ")")
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit {card.architecture!r} with hyper-parameters "
                              f"{card.hyperparameters}: " + "; ".join(problems)
                              + ". Is the card's architecture or configuration wrong?")


def _first(names: list[str]) -> str:
    return ", ".join(names[:_MAX_LISTED]) + (", ..." if len(names) > _MAX_LISTED else "")


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], ModelCard]:
    """The raw tensors and the card of checkpoint ``path`` (no model built)."""
    from safetensors.torch import load_file

    path = Path(path)
    metadata, _ = _open_header(path)
    card = _card_from_metadata(metadata, path)
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read the weights (truncated or corrupt file: {exc})") from None
    return state, card


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Build the card's network, load the weights strictly and return ``(model in eval mode, card)``.

    ``device`` may be "auto" (CUDA when available).
    """
    path = Path(path)
    metadata, shapes = _open_header(path)
    card = _card_from_metadata(metadata, path)
    model = build_from_card(card, path)
    _compare({k: tuple(v.shape) for k, v in model.state_dict().items()},
             {k: tuple(s) for k, (s, _) in shapes.items()}, card, path)
    state, _ = load_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not load into {card.architecture!r}: {exc}") from None
    model.to(_resolve_device(device)).eval()
    log.info("loaded %s (%s, %d classes)", path, card.architecture, card.out_channels)
    return model, card


# --------------------------------------------------------------------------- importing official weights
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

