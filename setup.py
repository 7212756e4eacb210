"""Installable package for 3D diffusion denoising of low-dose whole-body PET."""

from setuptools import find_packages, setup

setup(
    name="pet-ddpm3d",
    version="0.1.0",
    description=(
        "3D conditional denoising diffusion model for low-dose whole-body PET "
        "(Robust Whole-body PET Image Denoising Using 3D Diffusion Models, EJNMMI 2025)"
    ),
    license="MIT",
    python_requires=">=3.10",
    # The --config presets stay in the top-level configs/ folder and ship as package data in
    # guided_diffusion/configs/, where guided_diffusion.flags looks for them in an installed copy.
    packages=[*find_packages(include=["guided_diffusion", "guided_diffusion.*"]), "guided_diffusion.configs"],
    package_dir={"guided_diffusion.configs": "configs"},
    package_data={"guided_diffusion.configs": ["*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "mpi4py>=4.0",
        "mpich; sys_platform == 'linux'",
        "blobfile>=2.0",
        "nibabel>=5.0",
        "tqdm>=4.60",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "matplotlib>=3.7",
        "pyyaml>=6.0",
        "pydicom>=2.4",
    ],
    extras_require={"test": ["pytest>=7.0", "ruff>=0.5", "import-linter>=2.1"]},
)
