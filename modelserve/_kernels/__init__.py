"""Cython kernels (see modelserve.ops for the public wrappers)."""
