"""The DomainNet paper path from the run command (issue 12): ``--pretrained PATH|none``, its sha256 in the job
identity, the paper profile refusing to start without a choice, the release's per-target label smoothing,
and a real one-step run from a torchvision-format checkpoint on a generated DomainNet-format tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import run
from harness.data.fixtures import write_domainnet_tree

DOMAINS = ("clipart", "infograph", "real")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("domainnet")
    write_domainnet_tree(root, domains=DOMAINS, num_classes=3, per_class=(2, 1), size_range=(40, 60))
    return root


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> Path:
    """All six domains in the published layout, classes 0-9 of the 345, one train and one test JPEG per class
    and domain (the same small image everywhere: fast to write and to evaluate). The pre-run check would
    refuse it (missing classes, counts far below the release's), so the run passes ``--data-check none``;
    the loaders still check every image they read."""
    import io

    import numpy as np
    from PIL import Image

    from harness.data.domains import DOMAINNET

    root = tmp_path_factory.mktemp("domainnet_full")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    for d in DOMAINNET:
        for split in ("train", "test"):
            lines = []
            for c in range(10):
                rel = f"{d}/class_{c:03d}/{d}_{c:03d}_{split}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(buf.getvalue())
                lines.append(f"{rel} {c}")
            (root / f"{d}_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def _args(tmp_path: Path, tree: Path, *extra: str) -> list[str]:
    return ["--suite", "domainnet", "--root", str(tree), "--profile", "paper", "--device", "cpu",
            "--methods", "mcd_grl", "--variants", "static", "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results"), "--no-plots", "--launcher", "local", *extra]  # fmt: skip


def _dry(tmp_path: Path, tree: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert run.main(_args(tmp_path, tree, "--dry-run", "--json", *extra)) == 0
    return json.loads(capsys.readouterr().out)


def test_paper_profile_refuses_to_start_without_a_pretrained_choice(
    tmp_path: Path, tree: Path, capsys
) -> None:
    assert run.main(_args(tmp_path, tree, "--dry-run")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--pretrained PATH" in err and "--pretrained none" in err
    assert "torchvision" in err and len(err.strip().splitlines()) == 1


def test_pretrained_file_hash_is_part_of_the_job_identity(tmp_path: Path, tree: Path, capsys) -> None:
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    ja = _dry(tmp_path, tree, capsys, "--pretrained", str(a), "--targets", "clipart")
    jb = _dry(tmp_path, tree, capsys, "--pretrained", str(b), "--targets", "clipart")
    jn = _dry(tmp_path, tree, capsys, "--pretrained", "none", "--targets", "clipart")
    ids = {j["jobs"][0]["job_id"] for j in (ja, jb, jn)}
    assert len(ids) == 3
    assert ja["specs"][0]["pretrained"]["path"] == str(a.resolve())
    assert len(ja["specs"][0]["pretrained"]["sha256"]) == 64
    assert "pretrained" not in jn["specs"][0]
    assert run.main(_args(tmp_path, tree, "--dry-run", "--pretrained", str(tmp_path / "nope.pth"))) == 2


def test_release_label_smoothing_per_target(tmp_path: Path, tree: Path, capsys) -> None:
    out = _dry(tmp_path, tree, capsys, "--pretrained", "none", "--methods", "mcd_grl,dann")
    ls = {(s["method"], s["target"]): s["hparams"]["label_smoothing"] for s in out["specs"]}
    assert ls[("mcd_grl", "infograph")] == 0.1 and ls[("dann", "infograph")] == 0.1
    assert ls[("mcd_grl", "clipart")] == 0.01 and ls[("dann", "clipart")] == 0.0
    # the user's --hparams still win
    out = _dry(tmp_path, tree, capsys, "--pretrained", "none", "--hparams", "label_smoothing=0.05")
    assert {s["hparams"]["label_smoothing"] for s in out["specs"]} == {0.05}
    # one setting per command: the per-target values do not split the report's sections
    assert len({json.dumps(s["hparams_overrides"], sort_keys=True) for s in out["specs"]}) == 1


@pytest.mark.torch
@pytest.mark.parametrize(
    ("profile", "arch"), [("quick", "resnet18"), pytest.param("paper", "resnet101", marks=pytest.mark.slow)]
)
def test_one_step_run_from_a_torchvision_checkpoint(
    tmp_path: Path, full_tree: Path, profile: str, arch: str
) -> None:
    torch = pytest.importorskip("torch")
    import torchvision

    from harness import jobs

    torch.manual_seed(0)
    ckpt = tmp_path / f"{arch}.pth"
    torch.save(getattr(torchvision.models, arch)().state_dict(), ckpt)
    argv = _args(tmp_path, full_tree, "--pretrained", str(ckpt), "--targets", "clipart", "--variants", "sr",
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--data-check", "none",
                 "--profile", profile)  # fmt: skip
    if arch == "resnet18":
        argv += ["--no-report"]
    code = run.main(argv)
    [job] = list((tmp_path / "runs" / "domainnet").iterdir())
    rec = jobs.read_json(job / "result.json")
    assert code == 0, rec.get("error")
    assert rec["status"] == "done" and rec["final"]["epoch"] == 1
    log = (job / "log.txt").read_text()
    assert "pretrained: features: " in log and "tensors loaded" in log
    if arch == "resnet101":
        readme = (tmp_path / "results" / "domainnet" / "README.md").read_text()
        assert f"backbone from `{ckpt.name}`" in readme
