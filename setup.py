"""Builds the C core through cffi; all metadata lives in pyproject.toml.

The extension uses only the stable ABI (cffi builds it with ``py_limited_api``, hence
``_native.abi3.so``), so one wheel tagged ``cp311-abi3`` serves every CPython >= 3.11.
"""

from setuptools import setup

setup(
    cffi_modules=["src/_ffi_build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
