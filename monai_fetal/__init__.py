"""monai-fetal: few-shot fetal-head ultrasound segmentation with MONAI (diffusion synthesis, SAM fine-tuning)."""

import warnings

# MONAI 1.5-1.6's own get_edge_surface_distance (behind HausdorffDistanceMetric and SurfaceDistanceMetric)
# passes get_mask_edges' deprecated ``always_return_as_numpy`` itself, so every evaluated image printed
# a FutureWarning that no caller can avoid (Project-MONAI/MONAI#9059, fixed by #9060). Only that message
# from MONAI's modules is ignored; the argument is removed in MONAI 1.7.
warnings.filterwarnings(
    "ignore", message=r".*get_mask_edges:always_return_as_numpy", category=FutureWarning, module=r"monai\."
)
