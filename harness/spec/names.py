"""Names of the DRT layer's own tensors (one definition for both frameworks, weights and optimisers).

A dynamic DRT layer holds, besides the static kernel ``weight`` (W0, which a static checkpoint provides),
the bases Φ and the two Linear layers of the coefficient branch. These are the *new* parameters: a pretrained
static backbone cannot provide them, and they train at the new-parameter learning rate.

* Neutral names (torch ``state_dict`` names, relative to the layer; see ``docs/architecture.md``):
  :data:`DRT_TENSOR_SUFFIXES` — ``bases``, ``router.fc1.weight``, ``router.fc2.weight``.
* Keras variable names (the ``DRTConv2D`` attributes, last component of ``Variable.path``):
  :data:`KERAS_DRT_VARIABLES` — ``bases``, ``router_fc1``, ``router_fc2``.
"""

from __future__ import annotations

__all__ = ["DRT_TENSOR_SUFFIXES", "KERAS_DRT_VARIABLES", "is_drt_tensor", "is_drt_variable_path"]

#: Neutral names (relative to a DRT layer) of the tensors only a dynamic layer has.
DRT_TENSOR_SUFFIXES: tuple[str, ...] = ("bases", "router.fc1.weight", "router.fc2.weight")

#: Keras variable names of the same tensors, in the same order.
KERAS_DRT_VARIABLES: tuple[str, ...] = ("bases", "router_fc1", "router_fc2")


def is_drt_tensor(name: str) -> bool:
    """True for the neutral name of a DRT tensor: a suffix of :data:`DRT_TENSOR_SUFFIXES` itself (a layer's
    own name) or that suffix after a dot (``features.layer1.0.conv2.bases``). ``weight`` (W0) is not one."""
    return any(name == s or name.endswith("." + s) for s in DRT_TENSOR_SUFFIXES)


def is_drt_variable_path(path: str) -> bool:
    """True for a Keras ``Variable.path`` (``"drt_resnet50/features/layer1.0.conv2/bases"``) or bare name
    whose last component is one of :data:`KERAS_DRT_VARIABLES` (a ``:0`` suffix is ignored)."""
    return path.rsplit("/", 1)[-1].split(":", 1)[0] in KERAS_DRT_VARIABLES
