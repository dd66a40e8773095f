"""drt-bench harness: framework-neutral specs, run matrix, results store, FLOP accounting, reports.

Nothing in this package imports torch, TensorFlow or Keras at module import time; the framework
implementations live in ``impl_torch`` and ``impl_keras`` and are imported lazily where needed.
"""

__version__ = "0.1.0"
