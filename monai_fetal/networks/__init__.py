"""Networks: the box-prompted SAM (LiteMedSAM or SAM ViT-B/L/H), the runtime that runs it fast, and its embedding cache."""

from monai_fetal.networks.embedding_cache import EmbeddingCache, module_fingerprint
from monai_fetal.networks.prompted_sam import TRAINABLE, PromptedSam
from monai_fetal.networks.sam_builders import SAM_BUILDERS, SamSpec, build_prompted_sam, frame_size_of, read_state_dict
from monai_fetal.networks.sam_runtime import PRECISIONS, SamRuntime, default_precision

__all__ = [
    "EmbeddingCache",
    "PRECISIONS",
    "PromptedSam",
    "SAM_BUILDERS",
    "SamRuntime",
    "SamSpec",
    "TRAINABLE",
    "build_prompted_sam",
    "default_precision",
    "frame_size_of",
    "module_fingerprint",
    "read_state_dict",
]
