"""Builds the C core through cffi; all metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["src/_ffi_build.py:ffibuilder"])
