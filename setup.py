"""Build script. Metadata and dependencies are in setup.cfg; this adds the repository's ``bundles/``
folder to the package as ``monai_fetal.bundle_files``, so a non-editable ``pip install .`` carries
the MONAI bundles (``monai_fetal.bundles.bundle_dir`` finds them there, or in a checkout)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["monai_fetal", "monai_fetal.*"]), "monai_fetal.bundle_files"],
    package_dir={"monai_fetal.bundle_files": "bundles"},
    package_data={
        "monai_fetal": [  # the demo's 30 HC18 images (CC BY 4.0, attributed in LICENSE.txt)
            "demo_data/hc18_demo/*.csv",
            "demo_data/hc18_demo/LICENSE.txt",
            "demo_data/hc18_demo/images/*.png",
            "demo_data/hc18_demo/annotations/*.png",
        ],
        "monai_fetal.bundle_files": [
            "*.json",
            "*/LICENSE",
            "*/large_files.yml",
            "*/configs/*.json",
            "*/configs/*.conf",
            "*/docs/*",
            "fetal_us_diffusion/models/prior/*",  # the pretrained prior, listed in large_files.yml
            "fetal_head_sam/models/model.pt",  # an empty state dict: MONAI Label serves only bundles with a model file
        ]
    },
)
