"""Network architectures, one file each, and the registry that names them."""

import importlib

from lkseg.models.registry import MODELS, ModelSpec, build_model, count_parameters, get_spec, list_models, register

#: architecture modules; importing each one registers its networks
ARCHITECTURE_MODULES = ("uxnet", "repuxnet", "deformuxnet", "mednext", "baselines", "testnets")

for _name in ARCHITECTURE_MODULES:
    importlib.import_module(f"lkseg.models.{_name}")

__all__ = ["MODELS", "ModelSpec", "build_model", "count_parameters", "get_spec", "list_models", "register"]
