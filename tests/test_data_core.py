"""Framework-neutral pieces: transforms, samplers, splits, smoke suite, registry, import hygiene."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from harness.data import (
    ArraySplit,
    TransformSpec,
    apply_transform,
    balanced_plan,
    get_suite,
    list_suites,
    load_batch,
    make_plan,
    sample_rng,
)
from harness.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from harness.errors import DataError, SpecError


def test_harness_data_imports_no_framework():
    code = (
        "import sys, harness.data, harness.data.__main__, harness.data.digits, harness.data.domainnet, "
        "harness.data.digit_five, harness.data.smoke, harness.data.shift, harness.data.fixtures\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry():
    assert set(list_suites()) == {"digits", "smoke", "digit-five", "domainnet"}
    with pytest.raises(DataError, match="unknown suite"):
        get_suite("mnist-m")
    with pytest.raises(DataError, match="no option"):
        get_suite("smoke", n_trian=3)


def test_domain_registry_matches_every_suite():
    import importlib

    from harness.data import SUITE_DOMAINS, suite_domains, suite_num_classes

    assert set(SUITE_DOMAINS) == set(list_suites())
    classes = {"digits": "digits:DigitsSuite", "smoke": "smoke:SmokeSuite",
               "digit-five": "digit_five:DigitFiveSuite", "domainnet": "domainnet:DomainNetSuite"}
    for name, path in classes.items():
        mod, cls = path.split(":")
        suite_cls = getattr(importlib.import_module(f"harness.data.{mod}"), cls)
        assert suite_cls.num_classes == suite_num_classes(name)
        if name != "domainnet":  # DomainNetSuite sets its domains per instance (a ``domains=`` option)
            assert suite_cls.domains == suite_domains(name)
    assert get_suite("smoke").domains == suite_domains("smoke")
    from harness.data.domainnet import DOMAINS as DN

    assert DN == suite_domains("domainnet")
    with pytest.raises(DataError, match="unknown suite"):
        suite_domains("mnist-m")


def test_presets_match_the_spec():
    d, t = TransformSpec.digits(True), TransformSpec.domainnet(True)
    assert d.resize == (32, 32) and d.mean == (0.5,) * 3 and d.std == (0.5,) * 3 and d.deterministic
    assert t.resize == 256 and t.crop == (224, 224) and t.random_crop and t.hflip
    assert t.mean == IMAGENET_MEAN and t.std == IMAGENET_STD
    e = TransformSpec.domainnet(False)
    assert e.deterministic and e == t.eval() and e.crop == (224, 224)
    assert TransformSpec.from_dict(t.to_dict()) == t
    with pytest.raises(SpecError):
        TransformSpec(channels=2)


@pytest.mark.parametrize("fused", [False, True])
def test_eval_transform_values(fused):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    spec = replace(TransformSpec.domainnet(False), fused_crop=fused)
    out = apply_transform(img, spec)
    ref = Image.fromarray(img).resize((341, 256), Image.BILINEAR)  # shorter side 256, int() of the long side
    left, top = int(round((341 - 224) / 2)), int(round((256 - 224) / 2))
    ref = np.asarray(ref.crop((left, top, left + 224, top + 224)), dtype=np.float64) / 255.0
    ref = (ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    if not fused:
        np.testing.assert_allclose(out, ref, atol=1e-5)
    else:  # one resample of the crop box: equal up to one uint8 step on a few pixels
        err = np.abs(out - ref) * np.array(IMAGENET_STD) * 255
        assert err.max() < 1.01 and (err > 0.01).mean() < 0.1
    chw = apply_transform(img, spec, layout="CHW")
    assert chw.flags.c_contiguous and np.array_equal(chw, out.transpose(2, 0, 1))


def test_grey_digit_to_three_channels():
    g = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    out = apply_transform(g, TransformSpec.digits(False))
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out[..., 1], g / 127.5 - 1.0, atol=1e-6)


@given(seed=st.integers(0, 2**31 - 1), epoch=st.integers(0, 100), index=st.integers(0, 10**6))
def test_random_transform_is_seeded(seed, epoch, index):
    img = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    spec = TransformSpec(resize=36, crop=(32, 32), random_crop=True, hflip=True)
    a = apply_transform(img, spec, sample_rng(seed, epoch, index))
    b = apply_transform(img, spec, sample_rng(seed, epoch, index))
    assert np.array_equal(a, b) and a.shape == (32, 32, 3)


def test_random_transform_needs_rng():
    with pytest.raises(ValueError, match="rng"):
        apply_transform(np.zeros((8, 8, 3), np.uint8), TransformSpec(crop=(4, 4), random_crop=True))


@given(n=st.integers(1, 200), bs=st.integers(1, 64), seed=st.integers(0, 1000), epoch=st.integers(0, 5))
def test_pooled_plan_is_a_permutation(n, bs, seed, epoch):
    plan = make_plan(np.zeros(n, np.int64), bs, train=False)
    assert np.array_equal(np.concatenate(plan), np.arange(n))
    tr = make_plan(np.zeros(n, np.int64), bs, train=True, seed=seed, epoch=epoch, drop_last=False)
    assert sorted(np.concatenate(tr).tolist()) == list(range(n))
    assert [len(b) for b in make_plan(np.zeros(n, np.int64), bs, train=True, seed=seed)] == (
        [bs] * (n // bs) if n >= bs else [n]
    )


def test_pooled_plan_changes_with_epoch_and_seed():
    d = np.zeros(100, np.int64)
    a = np.concatenate(make_plan(d, 10, seed=0, epoch=0))
    assert not np.array_equal(a, np.concatenate(make_plan(d, 10, seed=0, epoch=1)))
    assert not np.array_equal(a, np.concatenate(make_plan(d, 10, seed=1, epoch=0)))
    assert np.array_equal(a, np.concatenate(make_plan(d, 10, seed=0, epoch=0)))


@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=5), bs=st.integers(5, 40), seed=st.integers(0, 99)
)
def test_balanced_plan_equal_per_domain(sizes, bs, seed):
    d = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)])
    if bs < len(sizes):
        with pytest.raises(ValueError):
            balanced_plan(d, bs, seed=seed, epoch=0)
        return
    plan = balanced_plan(d, bs, seed=seed, epoch=0, num_batches=6)
    assert len(plan) == 6
    for b in plan:
        assert len(b) == bs
        counts = np.bincount(d[b], minlength=len(sizes))
        assert counts.max() - counts.min() <= 1
    # small domains are cycled, every sample of a domain is used before any repeats
    first = np.concatenate(plan)
    for i, n in enumerate(sizes):
        used = first[d[first] == i]
        k = min(len(used), n)
        assert len(set(used[:k].tolist())) == k


def test_smoke_suite_fast_and_complete():
    s = get_suite("smoke")
    assert s.check().ok
    p = s.protocol("colour")
    assert p.source_train.images.shape == (240, 32, 32, 3) and len(p.target_test) == 40
    assert np.bincount(p.target_test.labels).tolist() == [4] * 10
    assert np.array_equal(get_suite("smoke").split("plain", "train").images, s.split("plain", "train").images)
    with pytest.raises(DataError, match="no domain"):
        s.protocol("mnist")


def test_load_batch_array_fast_path_equals_per_image_path():
    s = get_suite("smoke", n_train=30)
    sp = s.split("colour", "train")
    tf = s.transform(False)
    b = load_batch(sp, np.arange(5, 15), tf)
    ref = np.stack([apply_transform(sp.images[i], tf) for i in range(5, 15)])
    assert np.array_equal(b.x, ref)
    assert np.array_equal(load_batch(sp, np.arange(5, 15), tf, layout="CHW").x, ref.transpose(0, 3, 1, 2))


def test_array_split_validates():
    with pytest.raises(DataError, match="uint8"):
        ArraySplit(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2), np.zeros(2), ("a",), 10, "x")
    with pytest.raises(DataError, match="labels"):
        ArraySplit(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3), np.zeros(2), ("a",), 10, "x")
