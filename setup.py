"""Packaging for Dataflow workers (`--setup_file=./setup.py`); metadata is in pyproject.toml."""
import setuptools

setuptools.setup()
