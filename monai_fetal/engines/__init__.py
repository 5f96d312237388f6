"""What MONAI's engines need for prompted SAM and conditional diffusion."""

from monai_fetal.engines.auto_prompt import AutoBoxPrompt
from monai_fetal.engines.checkpoints import ResumableCheckpointSaver, ResumeHandler, latest_checkpoint
from monai_fetal.engines.evaluation_handlers import EvaluationReportWriter, HeadCircumferenceErrorHandler
from monai_fetal.engines.losses import MaskAndLocatorLoss
from monai_fetal.engines.sam_batch import SamPrepareBatch
from monai_fetal.engines.sam_inferer import SamInferer, SamTrainingInferer
from monai_fetal.engines.self_training import LocatorSelfTraining
from monai_fetal.engines.variants import AugmentationVariantDataset

__all__ = [
    "AugmentationVariantDataset",
    "AutoBoxPrompt",
    "LocatorSelfTraining",
    "EvaluationReportWriter",
    "HeadCircumferenceErrorHandler",
    "MaskAndLocatorLoss",
    "ResumableCheckpointSaver",
    "ResumeHandler",
    "SamInferer",
    "SamPrepareBatch",
    "SamTrainingInferer",
    "latest_checkpoint",
]
