"""Native checkpoints: one ``.safetensors`` file whose metadata holds the model card.

Loading never unpickles. Native files are read with safetensors; official ``.pth``/``.pt``
weights are read with ``torch.load(weights_only=True)`` only by
:func:`lkseg.checkpoint.official.import_official`,
which turns them (plus a model card) into a native checkpoint. Every problem with a file is a
:class:`CheckpointError` whose message names the file and says what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from lkseg.checkpoint.card import CheckpointError, ModelCard
from lkseg.errors import LkSegError
from lkseg.utils.atomic import atomic_path

log = logging.getLogger(__name__)

__all__ = ["CheckpointError", "CARD_KEY", "DIGEST_KEY", "expected_shapes", "tensors_digest", "verify_tensors", "save_checkpoint", "load_checkpoint", "load_state_dict", "read_card",
           "file_sha256", "build_from_card", "check_state_dict", "tensor_shapes"]

#: safetensors metadata key holding the model card JSON
CARD_KEY = "lkseg_card"
#: safetensors metadata key holding :func:`tensors_digest` of the file's tensors
DIGEST_KEY = "lkseg_tensors_sha256"
#: a network above this many parameters is refused before it is built (the largest paper model has 66M)
MAX_PARAMETERS = 2_000_000_000
_MAX_LISTED = 5


# --------------------------------------------------------------------------- writing
def save_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], card: ModelCard) -> Path:
    """Write ``state_dict`` and ``card`` to ``path`` atomically (temp file, fsync, rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    if not isinstance(card, ModelCard):
        raise TypeError(f"card must be a ModelCard, got {type(card).__name__}")
    tensors = _plain_tensors(state_dict, path)
    _refuse_non_finite(tensors, path)
    metadata = {CARD_KEY: card.to_json(), "format": "pt", DIGEST_KEY: tensors_digest(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
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


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (in name order): what the file must hold."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _refuse_non_finite(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    bad = [k for k, t in tensors.items() if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({_first(bad)}); "
                              "the weights are damaged (a diverged training run?) and cannot be used")


def verify_tensors(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: Path) -> bool:
    """Refuse damaged weights: a digest that does not match, or non-finite values. Returns whether the
    file carried a digest (files written before lkseg stored one are checked for finiteness only)."""
    expected = metadata.get(DIGEST_KEY)
    if expected is not None and tensors_digest(state) != expected:
        raise CheckpointError(f"{path}: the weights do not match the digest stored with them; the file is "
                              "damaged (changed after it was written). Use another copy of the checkpoint")
    _refuse_non_finite(state, path)
    return expected is not None


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


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of checkpoint ``path`` (card JSON, digest; header only)."""
    return _open_header(Path(path))[0]


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
    """The raw tensors and the card of checkpoint ``path`` (no model built), verified against the
    stored digest and for finite values."""
    from safetensors.torch import load_file

    path = Path(path)
    metadata, _ = _open_header(path)
    card = _card_from_metadata(metadata, path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read the weights (truncated or corrupt file: {exc})") from None
    verify_tensors(state, metadata, path)
    if str(device) != "cpu":
        state = {k: v.to(device) for k, v in state.items()}
    return state, card


def expected_shapes(card: ModelCard, source: str | os.PathLike = "model card") -> dict[str, tuple] | None:
    """State-dict shapes of the card's network, built on the meta device: no memory, no weights
    (None for a network whose constructor cannot run there, such as MONAI's SwinUNETR)."""
    try:
        with torch.device("meta"):
            model = build_from_card(card, source)
    except (RuntimeError, NotImplementedError):
        return None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{source}: the card describes a network of {n:,} parameters (above "
                              f"{MAX_PARAMETERS:,}); is its configuration damaged?")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_fits(path: str | os.PathLike) -> ModelCard:
    """The card of ``path``, refused unless its network (built on the meta device) has exactly the
    file's tensor keys and shapes: what ``lkseg info`` checks without reading any weights."""
    path = Path(path)
    metadata, shapes = _open_header(path)
    card = _card_from_metadata(metadata, path)
    expected = expected_shapes(card, path)
    if expected is not None:
        _compare(expected, {k: tuple(s) for k, (s, _) in shapes.items()}, card, path)
    return card


def _check_memory(shapes: dict[str, tuple[list[int], str]], source: Path) -> None:
    """The weights are held twice while loading (file tensors and model): refuse what cannot fit."""
    import psutil

    sizes = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1, "I8": 1, "BOOL": 1}
    need = 2 * sum(math.prod(s) * sizes.get(d.upper(), 8) for s, d in shapes.values())
    free = psutil.virtual_memory().available
    if need > free:
        raise CheckpointError(f"{source}: loading needs about {need / 2**30:.1f} GiB of memory but "
                              f"{free / 2**30:.1f} GiB are free; close other programs or use a machine with more memory")


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
    # validate before allocating: shapes from the header against the network built on the meta device
    found = {k: tuple(s) for k, (s, _) in shapes.items()}
    expected = expected_shapes(card, path)
    if expected is not None:
        _compare(expected, found, card, path)
    _check_memory(shapes, path)
    model = build_from_card(card, path)
    if expected is None:
        _compare({k: tuple(v.shape) for k, v in model.state_dict().items()}, found, card, path)
    state, _ = load_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not load into {card.architecture!r}: {exc}") from None
    model.to(_resolve_device(device)).eval()
    log.info("loaded %s (%s, %d classes)", path, card.architecture, card.out_channels)
    return model, card
