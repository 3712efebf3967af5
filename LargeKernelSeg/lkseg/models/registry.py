"""Registry of network architectures: a name maps to a constructor and its paper configuration.

Every constructor takes ``in_channels`` and ``out_channels`` plus its own keyword
hyper-parameters. ``paper_config`` holds the hyper-parameters of the published model (without
the channel counts); :func:`build_model` merges user overrides on top of it. Importing this module
imports the package :mod:`lkseg.models` first, which imports every architecture module, so the
built-in networks are registered before any lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    constructor: Callable[..., nn.Module]
    paper_config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    paper: str = ""
    #: hidden from ``lkseg models`` (test-only networks)
    hidden: bool = False
    #: a small configuration (feature sizes 8-16) for tests, demos and CPU smoke runs
    small_config: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {}


def register(name: str, paper_config: dict[str, Any] | None = None, description: str = "",
             paper: str = "", hidden: bool = False, small_config: dict[str, Any] | None = None) -> Callable:
    """Class/function decorator adding a constructor to :data:`MODELS` under ``name``."""

    def wrap(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(name, constructor, dict(paper_config or {}), description, paper, hidden,
                                dict(small_config or {}))
        return constructor

    return wrap


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(k for k, v in MODELS.items() if not v.hidden))
        raise UnknownModelError(f"unknown architecture {name!r}; known architectures: {known}") from None


def build_model(name: str, in_channels: int = 1, out_channels: int = 14, **overrides: Any) -> nn.Module:
    """Build a registered network with its paper configuration updated by ``overrides``."""
    spec = get_spec(name)
    config = {**spec.paper_config, **overrides}
    return spec.constructor(in_channels=in_channels, out_channels=out_channels, **config)


def list_models(include_hidden: bool = False) -> list[ModelSpec]:
    return [s for s in MODELS.values() if include_hidden or not s.hidden]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
