"""Network architectures, one file each, and the registry that names them."""

from lkseg.models.registry import MODELS, ModelSpec, build_model, count_parameters, get_spec, list_models, register

# Importing each architecture module registers it.
from lkseg.models import uxnet, repuxnet, deformuxnet, mednext, baselines, testnets  # noqa: E402,F401

__all__ = ["MODELS", "ModelSpec", "build_model", "count_parameters", "get_spec", "list_models", "register"]
