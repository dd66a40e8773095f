"""``python -m harness.equivalence layer|model|step``: the entry point only.

The checks build torch and Keras models, so they live with the other drivers in
:mod:`harness.drivers.equivalence`; this package holds just the ``__main__`` that calls
:func:`harness.drivers.equivalence.cli.main`.
"""
