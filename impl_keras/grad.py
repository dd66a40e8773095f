"""The tiny per-backend layer under the Keras methods: value and gradient, compiled steps, gradient reversal.

Every Keras method writes its losses as functions of explicit variable *values*
(``layer.stateless_call(trainable, non_trainable, x)``), so the same code runs on TensorFlow, JAX and torch:

* :func:`value_and_grad` — ``fn(params, *args) -> (loss, aux)`` ↦ ``g(params, *args) -> ((loss, aux), grads)``
  with TF ``GradientTape``, ``jax.value_and_grad(has_aux=True)`` or ``torch.autograd.grad``. A parameter that
  does not influence the loss gets ``None`` (TF, torch; JAX returns zeros) and is then skipped by the
  optimiser, as in torch.
* :func:`compile_step` — ``tf.function`` on TensorFlow (no XLA: ``jit_compile=False``, see
  ``docs/framework-notes.md`` §2), ``jax.jit`` on JAX, eager on torch. The compiled function is pure
  (values in, values out).
* :func:`grad_reverse` — ``y = sg(x) + (-λ)·(x - sg(x))``: forward exactly ``x`` (``x - sg(x)`` is exactly
  0), gradient exactly ``(-λ)·g`` — the same arithmetic as torch's ``grad * (-λ)``; no custom-gradient op
  needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops


def backend() -> str:
    return keras.backend.backend()


def value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[tuple[Any, Any], list[Any]]]:
    """Differentiate ``fn(params: list, *args) -> (loss, aux)`` with respect to ``params``."""
    b = backend()
    if b == "tensorflow":
        import tensorflow as tf

        def g_tf(params: list[Any], *args: Any) -> tuple[tuple[Any, Any], list[Any]]:
            params = [tf.convert_to_tensor(p) for p in params]
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss, aux = fn(params, *args)
            return (loss, aux), tape.gradient(loss, params)

        return g_tf
    if b == "jax":
        import jax

        vg = jax.value_and_grad(fn, has_aux=True)

        def g_jax(params: list[Any], *args: Any) -> tuple[tuple[Any, Any], list[Any]]:
            (loss, aux), grads = vg(list(params), *args)
            return (loss, aux), list(grads)

        return g_jax
    if b == "torch":
        import torch

        def g_torch(params: list[Any], *args: Any) -> tuple[tuple[Any, Any], list[Any]]:
            params = [p.detach().requires_grad_(True) for p in params]
            loss, aux = fn(params, *args)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            detach = lambda t: t.detach() if isinstance(t, torch.Tensor) else t  # noqa: E731
            import keras.src.tree as tree

            return (loss.detach(), tree.map_structure(detach, aux)), list(grads)

        return g_torch
    raise NotImplementedError(f"Keras backend {b!r} is not supported (tensorflow, jax, torch)")


def compile_step(fn: Callable[..., Any], enabled: bool = True) -> Callable[..., Any]:
    """Compile a pure step function for the backend (``enabled=False``: run eagerly)."""
    if not enabled:
        return fn
    b = backend()
    if b == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=False, reduce_retracing=True)
    if b == "jax":
        import jax

        return jax.jit(fn)
    return fn


def stop_gradient(x: Any) -> Any:
    return ops.stop_gradient(x)


def grad_reverse(x: Any, lam: Any) -> Any:
    """Gradient reversal ``GRL_λ``: identity forward, ``-λ·g`` backward (``lam`` a float or scalar tensor)."""
    sg = ops.stop_gradient(x)
    return sg + (-lam) * (x - sg)
