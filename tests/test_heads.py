import pytest
import torch

from tkvr.base.errors import TkvrError
from tkvr.model.heads import Head, fit_lda, orthogonal_matrix, random_matrix


def test_orthogonal_rows_are_orthonormal():
    w = orthogonal_matrix(10, 64, seed=3)  # [C, D]
    torch.testing.assert_close(w @ w.T, torch.eye(10), atol=1e-5, rtol=0)
    assert not torch.equal(w, orthogonal_matrix(10, 64, seed=4))
    assert torch.equal(w, orthogonal_matrix(10, 64, seed=3))


def test_orthogonal_needs_d_ge_c():
    with pytest.raises(TkvrError, match="D >= number of classes C, got D=8 < C=10"):
        orthogonal_matrix(10, 8)


def test_random_rows_unit_norm_and_seeded():
    w = random_matrix(7, 32, seed=1)
    torch.testing.assert_close(w.norm(dim=-1), torch.ones(7))
    assert torch.equal(w, random_matrix(7, 32, seed=1))


def test_head_logits_use_fixed_scale():
    w = torch.eye(3, 4)
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0]]), dim=-1)
    logits = Head(w * 5, "text")(z)  # rows are re-normalised
    torch.testing.assert_close(logits, torch.tensor([[100.0, 0, 0]]))


def test_lda_separates_synthetic_classes():
    g = torch.Generator().manual_seed(0)
    c, d, n = 6, 32, 20
    centres = torch.randn(c, d, generator=g) * 3
    y = torch.arange(c).repeat_interleave(n)
    x = centres[y] + torch.randn(c * n, d, generator=g)
    w = fit_lda(x, y, c)  # [C, D]; only 20 samples per class in 32 dims: shrinkage keeps it solvable
    assert w.shape == (c, d)
    torch.testing.assert_close(w.norm(dim=-1), torch.ones(c))
    yt = torch.arange(c).repeat_interleave(50)
    xt = centres[yt] + torch.randn(c * 50, d, generator=g)
    acc = (Head(w, "lda")(torch.nn.functional.normalize(xt, dim=-1)).argmax(1) == yt).float().mean()
    assert acc > 0.97, acc


def test_lda_needs_every_class():
    with pytest.raises(TkvrError, match="no features for class ids \\[2\\]"):
        fit_lda(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]), 3)


def test_lda_with_one_sample_per_class_is_the_class_means():
    x = torch.randn(5, 16)
    w = fit_lda(x, torch.arange(5), 5)
    torch.testing.assert_close(w, torch.nn.functional.normalize(x, dim=-1), atol=1e-5, rtol=1e-5)
