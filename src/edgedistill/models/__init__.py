"""Models: the zoo (one file per family), student derivation, feature hooks, size and FLOPs.

Importing this package registers every family, so ``create_model`` sees them all.
"""

from edgedistill.models import cifar_resnet, mobilenetv2, torchvision_nets, wrn
from edgedistill.models.analysis import count_flops, count_params, model_bytes, summarize
from edgedistill.models.features import FeatureExtractor, resolve_layer_aliases, valid_paths
from edgedistill.models.students import derive_student, student_name
from edgedistill.models.zoo import MODELS, Family, create_model, register_model

__all__ = [
    "MODELS",
    "FeatureExtractor",
    "Family",
    "cifar_resnet",
    "count_flops",
    "count_params",
    "create_model",
    "derive_student",
    "mobilenetv2",
    "model_bytes",
    "register_model",
    "resolve_layer_aliases",
    "student_name",
    "summarize",
    "torchvision_nets",
    "valid_paths",
    "wrn",
]
