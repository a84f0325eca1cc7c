import numpy as np
import pytest

import retrograd as rg
from retrograd.data import transforms as T


def test_normalize_exact():
    x = np.arange(2 * 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 2)
    out = T.Normalize(mean=[1.0, 2.0], std=[2.0, 4.0])(x)
    expected = x.copy()
    expected[:, 0] = (x[:, 0] - 1) / 2
    expected[:, 1] = (x[:, 1] - 2) / 4
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32
    # one image (C, H, W) and a Tensor
    t = T.Normalize([1.0, 2.0], [2.0, 4.0])(rg.tensor(x[0]))
    assert isinstance(t, rg.Tensor)
    np.testing.assert_array_equal(t.numpy(), expected[0])
    # features (N, F): along the last axis
    np.testing.assert_array_equal(T.Normalize([1, 2, 3], [1, 2, 3])(np.ones((2, 3), np.float64)),
                                  [[0, -0.5, -2 / 3]] * 2)
    with pytest.raises(ValueError, match=r"Normalize: mean has 3 values but the input has 2 channels"):
        T.Normalize([0, 0, 0], [1, 1, 1])(x)
    with pytest.raises(ValueError, match="std evaluated to zero"):
        T.Normalize([0], [0])
    with pytest.raises(TypeError, match="apply ToFloat first"):
        T.Normalize([0], [1])(np.zeros((1, 2, 2), np.uint8))


def test_to_float_compose_lambda():
    x = np.array([[[0, 51, 255]]], dtype=np.uint8)
    f = T.Compose([T.ToFloat(1 / 255), T.Lambda(lambda a: a * 2)])
    out = f(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[0.0, 0.4, 2.0]]], rtol=1e-6)


def test_horizontal_flip_with_fixed_generator():
    x = np.arange(4 * 1 * 2 * 3, dtype=np.float32).reshape(4, 1, 2, 3)
    # which images flip is rng.random(4) < 0.5 for a Generator(0)
    mask = rg.Generator(0).np.random(4) < 0.5
    out = T.RandomHorizontalFlip(0.5, generator=rg.Generator(0))(x)
    expected = np.where(mask[:, None, None, None], x[..., ::-1], x)
    np.testing.assert_array_equal(out, expected)
    assert 0 < mask.sum() < 4  # both cases exercised by this seed
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(x[0]), x[0][..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(x), x)
    with pytest.raises(ValueError, match=r"expected an image \(C, H, W\) or a batch \(N, C, H, W\), got shape \(3,\)"):
        T.RandomHorizontalFlip()(np.zeros(3))


def test_random_crop_with_fixed_generator():
    x = np.arange(3 * 2 * 4 * 4, dtype=np.float32).reshape(3, 2, 4, 4)
    size, pad = 3, 1
    g = rg.Generator(123).np
    i = g.integers(0, 4 + 2 * pad - size + 1, 3)
    j = g.integers(0, 4 + 2 * pad - size + 1, 3)
    out = T.RandomCrop(size, padding=pad, generator=rg.Generator(123))(x)
    padded = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    expected = np.stack([padded[k, :, i[k]:i[k] + size, j[k]:j[k] + size] for k in range(3)])
    assert out.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(out, expected)
    # a handwritten case: no padding, crop of a 1x3x3 image at the only 3x3 window
    img = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    np.testing.assert_array_equal(T.RandomCrop(3)(img), img)
    # padding 1 + crop 2 of a 1x1 image: all four windows contain the pixel exactly once
    one = np.full((1, 1, 1), 7.0, np.float32)
    for seed in range(4):
        c = T.RandomCrop(2, padding=1, generator=rg.Generator(seed))(one)
        assert c.shape == (1, 2, 2) and c.sum() == 7.0
    with pytest.raises(ValueError, match=r"crop size \(5, 5\) is larger than the padded input image size \(4, 4\)"):
        T.RandomCrop(5)(x)


def test_random_transforms_per_sample_independence_and_reproducibility():
    x = np.random.default_rng(0).random((64, 1, 8, 8)).astype(np.float32)
    aug = T.Compose([T.RandomCrop(8, padding=2, generator=rg.Generator(9)),
                     T.RandomHorizontalFlip(generator=rg.Generator(10))])
    a = aug(x)
    aug2 = T.Compose([T.RandomCrop(8, padding=2, generator=rg.Generator(9)),
                      T.RandomHorizontalFlip(generator=rg.Generator(10))])
    np.testing.assert_array_equal(a, aug2(x))
    changed = np.array([not np.array_equal(a[k], x[k]) for k in range(64)])
    assert 40 < changed.sum() <= 64
