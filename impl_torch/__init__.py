"""PyTorch implementation of drt-bench (NCHW): layers, backbones, methods, data adapters, training loop.

Importing this package imports torch; the harness imports it lazily (after
:func:`harness.frameworks.prepare_process`).
"""
