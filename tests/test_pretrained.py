"""torchvision-format checkpoints into both frameworks, strict rejection by name, and the weights CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

keras = pytest.importorskip("keras")

from harness.errors import WeightsError  # noqa: E402
from harness.spec.model import ModelSpec  # noqa: E402
from harness.weights import neutral  # noqa: E402
from harness.weights.__main__ import main as weights_main  # noqa: E402
from impl_keras.backbones import build_model as keras_build  # noqa: E402
from impl_keras.pretrained import load_torchvision as keras_load  # noqa: E402
from impl_torch.backbones import build_model as torch_build  # noqa: E402
from impl_torch.pretrained import load_torchvision as torch_load  # noqa: E402
from impl_torch.weights import to_neutral as torch_to_neutral  # noqa: E402

pytestmark = pytest.mark.cross


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    """A torchvision ResNet-18 state dict (random weights, non-trivial BN statistics) saved as .pth."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return str(path), tv.state_dict()


def _x(n: int = 2, size: int = 64) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


def test_static_checkpoint_gives_equal_outputs_in_both_frameworks(checkpoint) -> None:
    path, state = checkpoint
    spec = ModelSpec(arch="resnet18", variant="static", num_classes=10)
    tm = torch_build(spec).eval()
    rep = torch_load(tm, path)
    assert rep.new == [] and sorted(rep.ignored) == ["fc.bias", "fc.weight"]
    assert len(rep.loaded) == len(state) - 2
    km = keras_build(spec)
    krep = keras_load(km, path)
    assert krep.loaded == rep.loaded
    # heads are task-specific and fresh: give Keras the torch head, then compare logits and features
    km.head.from_neutral(
        {k[len("head.") :]: v for k, v in torch_to_neutral(tm).items() if k.startswith("head.")}
    )
    x = _x()
    tv = torchvision.models.resnet18().eval()
    tv.load_state_dict(state)
    tv.fc = torch.nn.Identity()
    with torch.no_grad():
        ft = tm.features(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(ft, tv(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
        yt = tm(torch.from_numpy(x)).numpy()
    fk = np.asarray(km.features(x.transpose(0, 2, 3, 1), training=False))
    yk = np.asarray(km(x.transpose(0, 2, 3, 1), training=False))
    assert np.max(np.abs(ft - fk)) / np.max(np.abs(ft)) < 1e-5
    assert np.max(np.abs(yt - yk)) / np.max(np.abs(yt)) < 1e-5


def test_drt_model_reports_new_tensors_and_matches_after_porting_them(checkpoint) -> None:
    path, _ = checkpoint
    spec = ModelSpec(arch="resnet18", variant="sr", num_classes=10)
    tm = torch_build(spec).eval()
    rep = torch_load(tm, path)
    assert len(rep.new) == 16 * 3  # bases + two router weights of each of the 16 BasicBlock 3x3 convs
    assert all(n.endswith(("bases", "router.fc1.weight", "router.fc2.weight")) for n in rep.new)
    km = keras_build(spec)
    krep = keras_load(km, path)
    assert sorted(krep.new) == sorted(rep.new)
    # the static part is now equal; port the fresh DRT tensors and the head from torch
    t_arrays = torch_to_neutral(tm)
    k_arrays = km.to_neutral()
    for n in rep.loaded:
        np.testing.assert_array_equal(k_arrays[f"features.{n}"], t_arrays[f"features.{n}"])
    km.from_neutral(t_arrays)
    x = _x()
    with torch.no_grad():
        yt = tm(torch.from_numpy(x)).numpy()
    yk = np.asarray(km(x.transpose(0, 2, 3, 1), training=False))
    assert np.max(np.abs(yt - yk)) / np.max(np.abs(yt)) < 1e-5


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_bad_checkpoints_are_rejected_by_name(checkpoint, tmp_path, framework: str) -> None:
    _, state = checkpoint
    spec = ModelSpec(arch="resnet18", variant="sr", num_classes=10)
    model = torch_build(spec) if framework == "torch" else keras_build(spec)
    load = torch_load if framework == "torch" else keras_load
    before = torch_to_neutral(model) if framework == "torch" else model.to_neutral()

    missing = dict(state)
    del missing["layer2.1.bn1.running_var"]
    p = tmp_path / "missing.pth"
    torch.save(missing, p)
    with pytest.raises(WeightsError, match=r"missing: layer2\.1\.bn1\.running_var"):
        load(model, p)

    bad = dict(state)
    bad["layer3.0.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    bad["layer4.0.downsample.1.bias"] = torch.zeros(3)
    bad["layer9.weight"] = torch.zeros(1)
    p = tmp_path / "bad.pth"
    torch.save(bad, p)
    with pytest.raises(WeightsError) as e:
        load(model, p)
    msg = str(e.value)
    assert "layer3.0.conv2.weight: expected (256, 256, 3, 3), got (256, 256, 1, 1)" in msg
    assert "layer4.0.downsample.1.bias" in msg and "unexpected: layer9.weight" in msg
    # nothing was loaded by a rejected checkpoint
    after = torch_to_neutral(model) if framework == "torch" else model.to_neutral()
    assert all(np.array_equal(before[k], after[k]) for k in before)

    with pytest.raises(WeightsError, match="no such checkpoint file"):
        load(model, tmp_path / "absent.pth")


def test_old_checkpoint_without_num_batches_tracked(checkpoint) -> None:
    _, state = checkpoint
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    tm = torch_build(ModelSpec(arch="resnet18", variant="static"))
    rep = torch_load(tm, old)
    assert len(rep.defaulted) == 20 and tm.features.bn1.num_batches_tracked.item() == 0


def test_cli_pretrained_and_round_trip(checkpoint, tmp_path, capsys) -> None:
    path, _ = checkpoint
    common = ["--arch", "resnet18", "--variant", "comb", "--num-classes", "7"]
    t_out = tmp_path / "t.pth"
    assert weights_main(["convert", str(t_out), "--pretrained", path, "--to", "torch", *common]) == 0
    assert "new: layer1.0.conv1.bases" in capsys.readouterr().out
    k_out = tmp_path / "k.weights.h5"
    assert weights_main(["convert", str(t_out), str(k_out), "--to", "keras", *common]) == 0
    n_out = tmp_path / "back.safetensors"
    assert weights_main(["convert", str(k_out), str(n_out), "--to", "torch", *common]) == 0
    first = torch.load(t_out, weights_only=True)
    back = neutral.load(n_out)
    assert set(back) == set(first)
    for k, v in first.items():
        np.testing.assert_array_equal(back[k], v.numpy())
    # the neutral file carries its spec: no --arch needed
    t2 = tmp_path / "t2.pt"
    assert weights_main(["convert", str(n_out), str(t2), "--to", "torch"]) == 0
    # Keras from a torchvision checkpoint, neutral output
    kn = tmp_path / "kp.safetensors"
    assert weights_main(["convert", str(kn), "--pretrained", path, "--to", "keras", *common]) == 0
    arr = neutral.load(kn)
    np.testing.assert_array_equal(
        arr["features.layer1.0.conv1.weight"], first["features.layer1.0.conv1.weight"]
    )
    # errors: a spec mismatch is rejected by name; a missing file is an error, not a download
    assert (
        weights_main(
            [
                "convert",
                str(t_out),
                str(tmp_path / "x.pth"),
                "--to",
                "torch",
                "--arch",
                "resnet18",
                "--variant",
                "static",
                "--num-classes",
                "7",
            ]
        )
        == 2
    )
    assert "unexpected" in capsys.readouterr().err
    assert (
        weights_main(
            [
                "convert",
                str(tmp_path / "y.pth"),
                "--pretrained",
                str(tmp_path / "nope.pth"),
                "--to",
                "torch",
                *common,
            ]
        )
        == 2
    )
    assert "no such checkpoint file" in capsys.readouterr().err


def test_training_job_pretrained_file_into_both_trainers(checkpoint, tmp_path) -> None:
    """``job["pretrained"]`` (torchvision .pth or neutral file) reaches every ``*features`` net of both
    trainers' algorithms; DRT tensors and heads stay new; a missing file is a clear error."""
    from harness.spec.method import MethodSpec
    from impl_keras.methods import build_algorithm as keras_algo
    from impl_keras.train import _load_pretrained as keras_pre
    from impl_torch.methods import build_algorithm as torch_algo
    from impl_torch.train import _load_pretrained as torch_pre

    path, state = checkpoint
    spec = ModelSpec(arch="resnet18", variant="sr", num_classes=5)
    method = MethodSpec.create("adda", num_classes=5, pretrained=True)  # two feature extractors
    ta = torch_algo(method, spec, device=torch.device("cpu"))
    torch_pre(ta, path)
    ka = keras_algo(method, spec)
    neutral_file = tmp_path / "r18.safetensors"
    arrays = {f"features.{k}": v.numpy() for k, v in state.items() if not k.startswith("fc.")}
    neutral.save(neutral_file, arrays)
    keras_pre(ka, str(neutral_file))
    for net in ("features", "target_features"):
        t = ta.nets[net].state_dict()
        k = ka.nets[net].to_neutral()
        for name in ("conv1.weight", "layer1.0.bn1.running_var", "layer4.1.conv2.weight"):
            np.testing.assert_array_equal(t[name].numpy(), state[name].numpy())
            np.testing.assert_array_equal(k[name], state[name].numpy())
        assert "layer4.1.conv2.bases" in t  # DRT tensors exist and were not in the file
    with pytest.raises(WeightsError, match="no such checkpoint file"):
        torch_pre(ta, str(tmp_path / "missing.pth"))
