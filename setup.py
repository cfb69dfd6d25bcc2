"""The package list, which pyproject.toml cannot express: kernels/ stays at the top of the
repository but installs as ``minigan.kernels`` (a top-level ``kernels`` package in
site-packages would collide with any other library of that name). Everything else about the
project is in pyproject.toml. Running from the source tree without installing,
minigan/__init__.py maps ``kernels/`` to ``minigan.kernels`` the same way."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["minigan", "minigan.*"]) + ["minigan.kernels"],
    package_dir={"minigan.kernels": "kernels"},
)
