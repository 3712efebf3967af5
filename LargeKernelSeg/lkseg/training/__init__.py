"""Fine-tuning (or training from scratch) on a local dataset; ``python -m lkseg.training``.

:mod:`.config` holds the settings and the command line, :mod:`.train` the public :func:`train`
entry point (DDP set-up around one run), :mod:`.run` the engine of one run, :mod:`.loop` its
helpers, :mod:`.crops` the case loading and crop sampling, :mod:`.distributed` the torchrun glue.

Stable entry points: ``lkseg.training.TrainConfig``, ``lkseg.training.train``.
"""

from lkseg.training.config import (
    DEFAULT_STEPS,
    TrainConfig,
    add_training_arguments,
    build_parser,
    config_from_args,
)
__all__ = ["DEFAULT_STEPS", "TrainConfig", "add_training_arguments", "build_parser", "config_from_args", "train"]


def __getattr__(name: str):
    # ``train`` (torch, MONAI, the trainer) is imported on first use: the command line builds every
    # subcommand's parser, and ``lkseg segment`` should not pay for importing the trainer
    if name == "train":
        from lkseg.training.train import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
