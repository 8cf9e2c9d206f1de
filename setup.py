"""Installs the universal-user-representation toolkit (SUMN and related systems)."""

from setuptools import find_packages, setup

setup(
    name="universal-user-representation",
    version="0.1.0",
    description=(
        "Universal user representations on TensorFlow 2 / Keras 3: SUMN multi-hop "
        "pooling with the behavioural-consistency objective, from logs to user vectors."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["contracts*", "data_dumper*", "data_loader*", "evaluation*", "main*", "model*", "util*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # TF 2.21 no longer installs TensorBoard, which tf.summary and users need.
        "tensorboard>=2.20",
        "keras>=3.10,<4",
        "keras-rs>=0.4",
        "pyarrow>=17",
        "numpy>=1.26",
        "duckdb>=1.1",
        "scikit-learn>=1.5",
        "matplotlib>=3.8",
    ],
    extras_require={
        # The CUDA build of the same TensorFlow release.
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5"],
        # main/build_tables.py --engine=spark. PySpark's sql extra brings pandas,
        # which mapInArrow insists on; PySpark 4.3 does not yet support pandas 3.
        # Spark also needs Java 17+ from the system (README: Tables at scale).
        "spark": ["pyspark[sql]>=4.0,<5", "pandas>=2.2,<3"],
    },
)
