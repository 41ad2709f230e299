"""Parameter-free feature terms (at, sp, pkt, rkd, nst, fsp) and cc's kernel, against NumPy."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from edgedistill.losses.cc import rbf_correlation

from .helpers import built, make_inputs


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def value(name, s, t, **params):
    term = built(name, [s], [t], **params)
    return term(make_inputs([s], [t])).item()


def huber(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def test_at_matches_numpy_with_different_channels():
    s, t = rand(2, 3, 4, 4), rand(2, 5, 4, 4, seed=1)

    def attention(x):
        a = (x**2).mean(axis=1).reshape(len(x), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    expected = ((attention(s.numpy()) - attention(t.numpy())) ** 2).mean()
    assert value("at", s, t) == pytest.approx(expected, rel=1e-10)


def test_at_pools_the_larger_attention_map():
    s, t = rand(2, 3, 4, 4), rand(2, 5, 2, 2, seed=1)
    a_s = (s.numpy() ** 2).mean(axis=1)
    a_s = a_s.reshape(2, 2, 2, 2, 2).mean(axis=(2, 4)).reshape(2, -1)  # 2x2 blocks
    a_t = (t.numpy() ** 2).mean(axis=1).reshape(2, -1)
    a_s /= np.linalg.norm(a_s, axis=1, keepdims=True)
    a_t /= np.linalg.norm(a_t, axis=1, keepdims=True)
    assert value("at", s, t) == pytest.approx(((a_s - a_t) ** 2).mean(), rel=1e-10)


def test_sp_matches_numpy():
    s, t = rand(3, 2, 2, 2), rand(3, 6, seed=1)
    grams = []
    for x in (s.numpy().reshape(3, -1), t.numpy()):
        g = x @ x.T
        grams.append(g / np.linalg.norm(g, axis=1, keepdims=True))
    expected = ((grams[0] - grams[1]) ** 2).sum() / 9
    assert value("sp", s, t) == pytest.approx(expected, rel=1e-10)


def test_pkt_matches_numpy_loops():
    s, t = rand(4, 3), rand(4, 7, seed=1)
    eps = 1e-7

    def distribution(x):
        b = len(x)
        k = np.array([[(np.dot(x[i], x[j]) / np.linalg.norm(x[i]) / np.linalg.norm(x[j]) + 1) / 2
                       for j in range(b)] for i in range(b)])
        return k / k.sum(axis=1, keepdims=True)

    p_s, p_t = distribution(s.numpy()), distribution(t.numpy())
    expected = np.mean(p_t * np.log((p_t + eps) / (p_s + eps)))
    assert value("pkt", s, t) == pytest.approx(expected, rel=1e-6)


def test_rkd_matches_numpy_loops():
    s, t = rand(4, 3), rand(4, 5, seed=1)

    def distances(e):
        d = np.array([[np.linalg.norm(a - b) for b in e] for a in e])
        return d / d[~np.eye(len(e), dtype=bool)].mean()

    def angles(e):
        out = []
        for i, j, k in itertools.product(range(len(e)), repeat=3):
            u, v = e[j] - e[i], e[k] - e[i]
            nu, nv = np.linalg.norm(u), np.linalg.norm(v)
            out.append(0.0 if nu == 0 or nv == 0 else u @ v / nu / nv)
        return np.array(out)

    e_s, e_t = s.numpy(), t.numpy()
    expected = (25 * huber(distances(e_s) - distances(e_t)).mean()
                + 50 * huber(angles(e_s) - angles(e_t)).mean())
    assert value("rkd", s, t) == pytest.approx(expected, rel=1e-8)


def test_nst_matches_numpy_and_vanishes_on_identical_maps():
    s, t = rand(2, 3, 2, 2), rand(2, 4, 2, 2, seed=1)

    def kernel_mean(a, b):
        return np.mean([(a[n] @ b[n].T) ** 2 for n in range(len(a))])

    def normalise(x):
        x = x.reshape(x.shape[0], x.shape[1], -1)
        return x / np.linalg.norm(x, axis=2, keepdims=True)

    a, b = normalise(s.numpy()), normalise(t.numpy())
    expected = kernel_mean(b, b) + kernel_mean(a, a) - 2 * kernel_mean(a, b)
    assert value("nst", s, t) == pytest.approx(expected, rel=1e-10)
    assert value("nst", s, 3 * s) == pytest.approx(0.0, abs=1e-12)


def test_fsp_matches_numpy_and_pools_within_a_network():
    s_in, s_out = rand(2, 3, 4, 4), rand(2, 2, 2, 2, seed=1)
    t_in, t_out = rand(2, 3, 2, 2, seed=2), rand(2, 2, 2, 2, seed=3)

    def fsp(a, b):
        if a.shape[-1] != b.shape[-1]:  # 4x4 -> 2x2 by averaging 2x2 blocks
            a = a.reshape(*a.shape[:2], 2, 2, 2, 2).mean(axis=(3, 5))
        g = np.zeros((a.shape[0], a.shape[1], b.shape[1]))
        for n, i, j in itertools.product(*map(range, g.shape)):
            g[n, i, j] = (a[n, i] * b[n, j]).sum() / 4
        return g

    term = built("fsp", [s_in, s_out], [t_in, t_out])
    assert all(isinstance(m, nn.Identity) for m in term.adaptors)
    expected = ((fsp(s_in.numpy(), s_out.numpy()) - fsp(t_in.numpy(), t_out.numpy())) ** 2).mean()
    got = term(make_inputs([s_in, s_out], [t_in, t_out])).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_cc_kernel_is_the_taylor_series_of_the_gaussian_rbf():
    e = torch.nn.functional.normalize(rand(3, 4), dim=1)
    gamma = 0.4
    exact = torch.exp(-gamma * torch.cdist(e, e) ** 2)
    assert torch.allclose(rbf_correlation(e, gamma, order=20), exact, atol=1e-12)
    x = e.numpy()
    second_order = np.array([[np.exp(-2 * gamma) * sum((2 * gamma) ** p / math.factorial(p)
                                                       * (x[i] @ x[j]) ** p for p in range(3))
                              for j in range(3)] for i in range(3)])
    assert np.allclose(rbf_correlation(e, gamma, order=2).numpy(), second_order)


def test_cc_matches_numpy_with_identity_projection():
    s, t = rand(3, 4), rand(3, 4, seed=1)
    term = built("cc", [s], [t]).double()
    with torch.no_grad():
        term.projections[0].weight.copy_(torch.eye(4))
        term.projections[0].bias.zero_()

    def correlation(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return np.exp(-0.8) * (1 + 0.8 * (x @ x.T) + 0.32 * (x @ x.T) ** 2)

    expected = ((correlation(s.numpy()) - correlation(t.numpy())) ** 2).sum() / 9
    assert term(make_inputs([s], [t])).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("name, s_shape, t_shape", [
    ("at", (2, 3, 3, 3), (2, 4, 3, 3)),
    ("sp", (3, 2, 2, 2), (3, 5)),
    ("pkt", (4, 3), (4, 5)),
    ("rkd", (4, 3), (4, 5)),
    ("nst", (2, 3, 2, 2), (2, 4, 2, 2)),
])
def test_gradcheck(name, s_shape, t_shape):
    s = rand(*s_shape).requires_grad_()
    t = rand(*t_shape, seed=1)
    term = built(name, [s], [t])
    assert gradcheck(lambda x: term(make_inputs([x], [t])), (s,))
