r"""The small per-backend convolution helper of the Keras implementation (NHWC input, HWIO kernels, 'VALID').

Why it exists (``docs/framework-notes.md`` §2): ``keras.ops.conv`` with groups runs through XLA on the
TensorFlow backend, and XLA's grouped-conv kernel gradient on CPU is ~343× slower than TensorFlow's own
kernel. The per-sample convolution of the DRT layer folds the batch into the groups, so it calls each
backend's native convolution directly:

* TensorFlow: ``tf.nn.conv2d`` (grouped when the input depth is a multiple of the kernel's input depth),
  eager and inside ``tf.function`` (without ``jit_compile``).
* JAX: ``jax.lax.conv_general_dilated(..., feature_group_count=B)``.
* torch: ``torch.nn.functional.conv2d(..., groups=B)`` on NCHW views.
* anything else: ``keras.ops.conv``.

Padding is never done here: callers pad explicitly and symmetrically (``keras.ops.pad``) and convolve 'VALID'.

**Gradients of the grouped convolution on TensorFlow.** TensorFlow refuses the gradient of a grouped
convolution on CPU outside XLA unless oneDNN is enabled (``TF_ENABLE_ONEDNN_OPTS=1``; TF turns it on by
default only on some Intel CPUs, not on the AMD EPYC machines here), and refuses it in float64 always.
:func:`per_sample_conv2d` therefore always runs the grouped ``tf.nn.conv2d`` *forward*, and takes the gradient

* natively where TensorFlow supports it (float32/float16 on GPU, or on CPU with oneDNN enabled);
* otherwise (every float64 call; float32 on CPU without oneDNN) from the patch formulation
  ``y[b,i,j,o] = Σ_p P[b,i,j,p] · W[b,p,o]`` (``P`` = the ``k·k`` strided slices of ``x``):
  ``∂W[b] = P[b]ᵀ·dy[b]`` and ``∂x`` = the slices' VJP of ``dy·W[b]ᵀ``.

So float64 and float32 share every forward code path; only the backward of the per-sample convolution can
differ (native grouped-conv gradient vs the patch formula), and on a CPU without oneDNN they are the same.
Plain (ungrouped) convolutions use ``tf.nn.conv2d`` and its native gradient in every dtype.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

Tensor = Any


def backend() -> str:
    """The active Keras backend name."""
    return keras.backend.backend()


# ---- plain convolution ----------------------------------------------------------------------------------
def conv2d(x: Tensor, kernel: Tensor, stride: int) -> Tensor:
    """``y = kernel * x`` with x (B, H, W, C_in), kernel (kh, kw, C_in, C_out), 'VALID', no bias."""
    x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)  # Keras variables → backend tensors
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.nn.conv2d(x, kernel, stride, "VALID")
    if name == "jax":
        import jax

        return jax.lax.conv_general_dilated(
            x, kernel, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if name == "torch":
        import torch.nn.functional as F

        y = F.conv2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), None, stride)
        return y.permute(0, 2, 3, 1)
    return ops.conv(x, kernel, strides=stride, padding="valid")


# ---- per-sample convolution (batch folded into groups) -----------------------------------------------------
def per_sample_conv2d(x: Tensor, kernels: Tensor, stride: int) -> Tensor:
    """``y[b] = kernels[b] * x[b]`` for x (B, H, W, C_in), kernels (B, kh, kw, C_in, C_out), 'VALID'.

    One grouped convolution: input folded to (1, H, W, B·C_in), kernel to (kh, kw, C_in, B·C_out),
    ``groups = B``; output unfolded back to (B, H_out, W_out, C_out).
    """
    x, kernels = ops.convert_to_tensor(x), ops.convert_to_tensor(kernels)
    name = backend()
    if name == "tensorflow":
        return _tf_per_sample(x, kernels, stride)
    if name == "torch":
        return _torch_per_sample(x, kernels, stride)
    if name == "jax":
        import jax

        b = x.shape[0]
        xf, wf = _fold(x, kernels)
        y = jax.lax.conv_general_dilated(
            xf,
            wf,
            (stride, stride),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=b,
        )
        return _unfold(y, b, kernels.shape[-1])
    b = ops.shape(x)[0]
    xf, wf = _fold(x, kernels)
    return _unfold(ops.conv(xf, wf, strides=stride, padding="valid"), b, kernels.shape[-1])


def _fold(x: Tensor, kernels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, H, W, C) → (1, H, W, B·C) and (B, kh, kw, Ci, Co) → (kh, kw, Ci, B·Co) (group b = sample b)."""
    s = ops.shape(x)
    ks = ops.shape(kernels)
    xf = ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (1, s[1], s[2], -1))
    wf = ops.reshape(ops.transpose(kernels, (1, 2, 3, 0, 4)), (ks[1], ks[2], ks[3], -1))
    return xf, wf


def _unfold(y: Tensor, b: Any, c_out: int) -> Tensor:
    """(1, Ho, Wo, B·Co) → (B, Ho, Wo, Co)."""
    s = ops.shape(y)
    return ops.transpose(ops.reshape(y, (s[1], s[2], b, c_out)), (2, 0, 1, 3))


def _tf_fold_conv(x: Tensor, kernels: Tensor, stride: int) -> Tensor:
    import tensorflow as tf

    b = tf.shape(x)[0]
    c_in, c_out = x.shape[-1], kernels.shape[-1]
    xf = tf.reshape(tf.transpose(x, (1, 2, 0, 3)), tf.stack([1, tf.shape(x)[1], tf.shape(x)[2], -1]))
    kh, kw = kernels.shape[1], kernels.shape[2]
    wf = tf.reshape(tf.transpose(kernels, (1, 2, 3, 0, 4)), (kh, kw, c_in, -1))
    y = tf.nn.conv2d(xf, wf, stride, "VALID")
    ys = tf.shape(y)
    y = tf.transpose(tf.reshape(y, tf.stack([ys[1], ys[2], b, c_out])), (2, 0, 1, 3))
    return y


def _tf_patches(x: Tensor, kh: int, kw: int, stride: int) -> Tensor:
    """(B, Ho, Wo, kh·kw·C_in) patches, ordered (row, col, channel) like a flattened HWIO kernel.

    Built from ``kh·kw`` strided slices (their gradient is a cheap ``StridedSliceGrad``)."""
    import tensorflow as tf

    shp = tf.shape(x)
    ho = (shp[1] - kh) // stride + 1
    wo = (shp[2] - kw) // stride + 1
    taps = [
        x[:, a : a + stride * (ho - 1) + 1 : stride, c : c + stride * (wo - 1) + 1 : stride, :]
        for a in range(kh)
        for c in range(kw)
    ]
    p = tf.stack(taps, axis=3)
    return tf.reshape(p, tf.stack([shp[0], ho, wo, kh * kw * x.shape[-1]]))


def _tf_native_grouped_grad(dtype: Any) -> bool:
    """Whether TensorFlow differentiates a grouped conv natively here (GPU, or oneDNN on CPU; not float64)."""
    import tensorflow as tf

    if dtype == tf.float64:
        return False
    if tf.config.list_logical_devices("GPU"):
        return True
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # pragma: no cover - private module moved
        return False


def _tf_per_sample(x: Tensor, kernels: Tensor, stride: int) -> Tensor:
    """Grouped ``tf.nn.conv2d`` forward; gradient from the patch formulation where TF refuses it (module doc).

    ``y[b,i,j,o] = Σ_p P[b,i,j,p] W[b,p,o]`` with ``P`` the patches: ``∂W[b] = P[b]ᵀ dy[b]`` (batched matmul)
    and     ``∂x = VJP of the patch extraction applied to dy·W[b]ᵀ``.
    """
    import tensorflow as tf

    if _tf_native_grouped_grad(x.dtype):
        return _tf_fold_conv(x, kernels, stride)

    @tf.custom_gradient
    def fn(xx: Tensor, ww: Tensor) -> tuple[Tensor, Any]:
        y = _tf_fold_conv(xx, ww, stride)

        def grad(dy: Tensor) -> tuple[Tensor, Tensor]:
            kh, kw, c_in, c_out = ww.shape[1], ww.shape[2], ww.shape[3], ww.shape[4]
            with tf.GradientTape() as tape:
                tape.watch(xx)
                p = _tf_patches(xx, kh, kw, stride)
            w2 = tf.reshape(ww, tf.stack([tf.shape(ww)[0], kh * kw * c_in, c_out]))
            gw = tf.reshape(tf.einsum("bhwp,bhwo->bpo", p, dy), tf.shape(ww))
            gx = tape.gradient(p, xx, output_gradients=tf.einsum("bhwo,bpo->bhwp", dy, w2))
            return gx, gw

        return y, grad

    return fn(x, kernels)


def _torch_per_sample(x: Tensor, kernels: Tensor, stride: int) -> Tensor:
    import torch.nn.functional as F

    b, h, w, c_in = x.shape
    _, kh, kw, _, c_out = kernels.shape
    xf = x.permute(0, 3, 1, 2).reshape(1, b * c_in, h, w)
    wf = kernels.permute(0, 4, 3, 1, 2).reshape(b * c_out, c_in, kh, kw)
    y = F.conv2d(xf, wf, None, stride, 0, 1, b)
    return y.view(b, c_out, y.shape[-2], y.shape[-1]).permute(0, 2, 3, 1)


def uses_grouped_conv_fast_path() -> bool:
    """True where :func:`per_sample_conv2d` must stay outside XLA (TF backend: XLA grouped grads are slow)."""
    return backend() == "tensorflow"
