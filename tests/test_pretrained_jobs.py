"""A training job's ``pretrained`` file is loaded strictly, by one loader for both trainers (issue 12).

Known wrappers and prefixes load; a file that does not cover every static backbone tensor with its exact
shape fails before training and names the tensors; the learning-rate group of new parameters (10×) holds
exactly the new tensors (DRT bases and routers, heads, critics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from harness import loop
from harness.errors import WeightsError
from harness.spec.method import MethodSpec
from harness.spec.model import ModelSpec
from harness.spec.names import is_drt_tensor
from harness.weights import neutral
from impl_torch.methods import build_algorithm as torch_algo
from impl_torch.train import TorchBackend

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def r18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


def _algo(arch: str = "resnet18", method: str = "source_only") -> object:
    spec = ModelSpec(arch=arch, variant="sr", num_classes=5)
    return torch_algo(MethodSpec.create(method, num_classes=5, pretrained=True), spec, device="cpu")


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s},
        lambda s: {"model": {f"module.{k}": v for k, v in s.items()}},
        lambda s: {f"backbone.{k}": v for k, v in s.items()},
        lambda s: {f"features.{k}": v for k, v in s.items() if not k.startswith("fc.")},
    ],
    ids=["plain", "state_dict", "module", "backbone", "features"],
)
def test_known_wrappers_and_prefixes_load(r18_state: dict, tmp_path: Path, wrap) -> None:
    path = tmp_path / "w.pth"
    torch.save(wrap(r18_state), path)
    algo = _algo()
    loop.load_pretrained(TorchBackend(), algo, str(path))
    got = algo.nets["features"].state_dict()
    for name in ("conv1.weight", "layer1.0.bn1.running_var", "layer4.1.conv2.weight"):
        np.testing.assert_array_equal(got[name].numpy(), r18_state[name].numpy())


def test_a_neutral_file_loads(r18_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    neutral.save(path, {k: v.numpy() for k, v in r18_state.items() if not k.startswith("fc.")})
    algo = _algo("resnet18", "adda")  # two feature extractors: both get the file
    loop.load_pretrained(TorchBackend(), algo, str(path))
    for net in ("features", "target_features"):
        np.testing.assert_array_equal(
            algo.nets[net].state_dict()["conv1.weight"].numpy(), r18_state["conv1.weight"].numpy()
        )


def test_a_resnet50_file_into_resnet101_fails_before_training_naming_tensors(tmp_path: Path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(WeightsError, match=r"missing: layer3\.10\.bn1\.bias, .* and \d+ more") as info:
        loop.load_pretrained(TorchBackend(), _algo("resnet101"), str(path))
    assert str(path) in str(info.value)


def test_an_unrelated_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11().state_dict(), path)
    with pytest.raises(WeightsError, match=r"missing: .*conv1\.weight.*unexpected: 0\.bias"):
        loop.load_pretrained(TorchBackend(), _algo(), str(path))


def test_a_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such checkpoint file"):
        loop.load_pretrained(TorchBackend(), _algo(), str(tmp_path / "nope.pth"))


def test_a_misshaped_tensor_fails(r18_state: dict, tmp_path: Path) -> None:
    bad = dict(r18_state)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(WeightsError, match=r"mis-shaped: conv1.weight: expected \(64, 3, 7, 7\)"):
        loop.load_pretrained(TorchBackend(), _algo(), str(path))


def test_the_new_parameter_group_holds_exactly_the_new_tensors() -> None:
    algo = _algo("resnet18", "dann")
    params = {id(p): f"{net}.{n}" for net, m in algo.nets.items() for n, p in m.named_parameters()}
    groups: dict[str, set[str]] = {}
    for opt in algo.optimizers.values():
        for g in opt.param_groups:
            groups.setdefault(g["group"], set()).update(params[id(p)] for p in g["params"])
    new = {n for n in params.values() if not n.startswith("features.") or is_drt_tensor(n)}
    assert groups["new"] == new
    assert groups["pretrained"] == set(params.values()) - new
    assert any(is_drt_tensor(n) for n in groups["new"]) and any(n.startswith("critic.") for n in new)
    lr = {g["group"]: g["lr"] for o in algo.optimizers.values() for g in o.param_groups}
    assert lr["new"] == pytest.approx(10 * lr["pretrained"])
