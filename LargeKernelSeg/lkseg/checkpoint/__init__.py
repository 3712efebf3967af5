"""Model files: the model card (:mod:`.card`), label tables with their terminology codes
(:mod:`.labels`), native ``.safetensors`` checkpoints (:mod:`.native`) and the import of weights
trained with the official repositories (:mod:`.official`).

Stable entry points: ``lkseg.checkpoint.load_checkpoint``, ``save_checkpoint``, ``read_card``,
``import_official``, ``ModelCard``, ``CheckpointError``.
"""

from lkseg.checkpoint.card import (
                                     CheckpointError,
                                     InferenceSettings,
                                     ModelCard,
                                     Preprocessing,
                                     Provenance,
)
from lkseg.checkpoint.labels import Code, Label, LabelError, LabelTable, get_table
from lkseg.checkpoint.native import (
                                     CARD_KEY,
                                     build_from_card,
                                     check_state_dict,
                                     file_sha256,
                                     load_checkpoint,
                                     load_state_dict,
                                     read_card,
                                     save_checkpoint,
                                     tensor_shapes,
)
from lkseg.checkpoint.official import import_official

__all__ = ["CARD_KEY", "CheckpointError", "Code", "InferenceSettings", "Label", "LabelError", "LabelTable",
           "ModelCard", "Preprocessing", "Provenance", "build_from_card", "check_state_dict", "file_sha256",
           "get_table", "import_official", "load_checkpoint", "load_state_dict", "read_card", "save_checkpoint",
           "tensor_shapes"]
