"""tpt-keras: the Temporal Parsing Transformer (ECCV 2022) for action quality assessment, in Keras 3."""

from setuptools import find_packages, setup

setup(
    name="tpt-keras",
    version="0.1.0",
    description="Temporal Parsing Transformer for action quality assessment in Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tpt_keras", "tpt_keras.*", "data_pipelines", "data_pipelines.*"]),
    package_data={"tpt_keras": ["resources/*"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "numpy",
        "scipy",
        "keras-tuner>=1.4",
        "tensorboard",  # keras-tuner on TF 2.21 imports it
        "scikit-learn",  # keras-tuner's BayesianOptimization
        "av",  # PyAV: container video decoding (bundles FFmpeg)
        "matplotlib",
        "h5py",
        "tqdm",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout"],
        # The original Flax I3D, used only to prove that our port is numerically equal.
        "parity": ["jax", "jaxlib", "flax"],
    },
    entry_points={"console_scripts": ["tpt=tpt_keras.cli.main:main"]},
)
