"""``python -m harness.bench``: the entry point only.

The benchmark builds torch and Keras models, so it lives with the other drivers in
:mod:`harness.drivers.bench`; this package holds just the ``__main__`` that calls its ``main``.
"""
