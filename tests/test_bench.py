import numpy as np
import pytest

from vqcodec.bench.image import bd_rate, ms_ssim_db, ms_ssim_rgb, psnr_rgb


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 3  # MSE = 9 / 3 = 3
    assert psnr_rgb(a, b) == pytest.approx(10 * np.log10(255**2 / 3))
    assert psnr_rgb(a, a) == float("inf")


def test_ms_ssim_identity_and_ordering():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    assert ms_ssim_rgb(img, img) == pytest.approx(1.0)
    slightly = np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)
    badly = np.clip(img.astype(int) + rng.integers(-60, 61, img.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ms_ssim_rgb(img, slightly) > ms_ssim_rgb(img, badly)
    assert ms_ssim_db(0.99) == pytest.approx(20.0)


def test_bd_rate_of_a_constant_rate_ratio():
    dist = np.array([26.0, 28.0, 30.0, 32.0, 34.0])
    rate_a = np.exp(0.01 * dist**3 / 10 - 0.2 * dist)  # a smooth cubic in log domain
    assert bd_rate(rate_a, dist, rate_a * 0.8, dist) == pytest.approx(-20.0)
    assert bd_rate(rate_a, dist, rate_a * 1.5, dist) == pytest.approx(50.0)


def test_bd_rate_uses_only_the_overlap_and_reports_none_without_one():
    dist = np.array([26.0, 28.0, 30.0, 32.0])
    rate = np.exp(dist / 10)
    shifted = dist + 3  # B covers 29..35: overlap 29..32, same curve there
    assert bd_rate(rate, dist, np.exp(shifted / 10), shifted) == pytest.approx(0.0, abs=1e-6)
    assert bd_rate(rate, dist, rate, dist + 10) is None


def test_the_priors_saving_counts_every_index_of_the_levels_model(photo):
    """A family's level 1 is tinyfam16's first stage: 16 codes (4 bits) on a 1/16 grid
    (48x72 pixels: 3x5 indices); the saving compares whole files with that."""
    import vqcodec
    from vqcodec.bench.image import codebook_usage, prior_saving

    from .conftest import FAMILY_LEVELS

    usage = codebook_usage("tinyfam", "cpu", {"photo": photo})
    assert [(r["model"], r["stage"]) for r in usage] == [(m, s) for m in ("tinyfam16", "tinyfam") for s in (1, 2, 3)]
    bpp = [len(vqcodec.compress(photo, quality=q, model="tinyfam")) * 8 / photo[..., 0].size for q in (1, 5)]
    rows = prior_saving("tinyfam", {"quality": [1, 5], "bpp": bpp}, usage)
    assert rows[0]["raw_bpp"] == pytest.approx(4 * 3 * 5 / (48 * 72))
    assert (rows[1]["model"], rows[1]["stages"]) == FAMILY_LEVELS[4]
    assert rows[1]["raw_bpp"] == pytest.approx((4 + 5 + 5) * 6 * 9 / (48 * 72))  # 1/8 grid, 16, 32, 32 codes
    assert all(r["saving"] == pytest.approx(1 - b / r["raw_bpp"]) for r, b in zip(rows, bpp, strict=True))
