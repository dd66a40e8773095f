"""Keras 3 implementation of drt-bench (NHWC, ``keras.ops`` only, plus :mod:`impl_keras.conv_backend`).

Importing this package imports Keras. In a process that also uses torch, call
:func:`harness.frameworks.prepare_process` first (importing TensorFlow before triton segfaults).
"""
