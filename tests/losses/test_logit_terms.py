"""ce, kd, dkd, dist, logit_std_kd against NumPy re-derivations and gradcheck."""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from edgedistill.losses import build_loss

from .helpers import make_inputs

B, K = 4, 5


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(B, K, generator=g, dtype=torch.float64) * 2
    t = torch.randn(B, K, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 3, 4, 1])
    return s, t, y


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def np_kd(s, t, temperature):
    total = 0.0
    for i in range(len(s)):
        p_t = softmax(t[i] / temperature)
        p_s = softmax(s[i] / temperature)
        total += sum(p_t[k] * np.log(p_t[k] / p_s[k]) for k in range(len(p_t)))
    return total / len(s) * temperature**2


def run(name, s, t, y, epoch=0, **params):
    term = build_loss(name, **params)
    return term(make_inputs(student_logits=s, teacher_logits=t, targets=y, epoch=epoch))


def test_ce_with_label_smoothing(logits):
    s, _, y = logits
    eps = 0.1
    expected = 0.0
    for i in range(B):
        log_p = np.log(softmax(s[i].numpy()))
        expected += (1 - eps) * -log_p[y[i]] + eps * -log_p.mean()
    got = run("ce", s, None, y, label_smoothing=eps)
    assert got.item() == pytest.approx(expected / B, rel=1e-10)


@pytest.mark.parametrize("name", ["ce", "kd"])
def test_start_epoch_delays_the_term(logits, name):
    s, t, y = logits
    assert run(name, s, t, y, epoch=2, start_epoch=3).item() == 0.0
    assert run(name, s, t, y, epoch=3, start_epoch=3).item() > 0.0


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_matches_formula(logits, temperature):
    s, t, y = logits
    expected = np_kd(s.numpy(), t.numpy(), temperature)
    assert run("kd", s, t, y, temperature=temperature).item() == pytest.approx(expected, rel=1e-10)


def np_dkd_parts(s, t, y, temperature):
    tckd = nckd = 0.0
    for i in range(len(s)):
        p_s, p_t = softmax(s[i] / temperature), softmax(t[i] / temperature)
        b_s = np.array([p_s[y[i]], 1 - p_s[y[i]]])
        b_t = np.array([p_t[y[i]], 1 - p_t[y[i]]])
        tckd += (b_t * np.log(b_t / b_s)).sum()
        rest = [k for k in range(s.shape[1]) if k != y[i]]
        q_s, q_t = p_s[rest] / p_s[rest].sum(), p_t[rest] / p_t[rest].sum()
        nckd += (q_t * np.log(q_t / q_s)).sum()
    return tckd / len(s) * temperature**2, nckd / len(s) * temperature**2


def test_dkd_matches_formula_and_warms_up(logits):
    s, t, y = logits
    tckd, nckd = np_dkd_parts(s.numpy(), t.numpy(), y.numpy(), 4.0)
    full = 1.0 * tckd + 8.0 * nckd
    assert run("dkd", s, t, y, epoch=30).item() == pytest.approx(full, rel=1e-10)
    assert run("dkd", s, t, y, epoch=4).item() == pytest.approx(full * 5 / 20, rel=1e-10)
    assert run("dkd", s, t, y, warmup_epochs=0).item() == pytest.approx(full, rel=1e-10)


def test_dkd_recovers_kd_for_one_sample(logits):
    """The paper's identity: KD = TCKD + (1 - p_t(target)) NCKD."""
    s, t, y = (x[:1] for x in logits)
    p_target = torch.softmax(t / 4.0, dim=1)[0, y[0]].item()
    dkd = run("dkd", s, t, y, alpha=1.0, beta=1 - p_target, warmup_epochs=0)
    assert dkd.item() == pytest.approx(run("kd", s, t, y).item(), rel=1e-10)


def test_dist_matches_numpy_corrcoef(logits):
    s, t, y = logits
    tau = 4.0
    p_s = np.stack([softmax(r / tau) for r in s.numpy()])
    p_t = np.stack([softmax(r / tau) for r in t.numpy()])
    inter = 1 - np.mean([np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(B)])
    intra = 1 - np.mean([np.corrcoef(p_s[:, k], p_t[:, k])[0, 1] for k in range(K)])
    expected = tau**2 * (2.0 * inter + 3.0 * intra)
    got = run("dist", s, t, y, beta=2.0, gamma=3.0, tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_logit_std_kd_matches_formula_and_ignores_student_scale(logits):
    s, t, y = logits
    def z(a):
        return (a - a.mean(1, keepdims=True)) / a.std(1, ddof=1, keepdims=True)

    expected = np_kd(z(s.numpy()), z(t.numpy()), 2.0)
    assert run("logit_std_kd", s, t, y).item() == pytest.approx(expected, rel=1e-6)
    shifted = run("logit_std_kd", 7 * s + 3, t, y)
    assert shifted.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name, params", [
    ("kd", {}), ("dist", {"tau": 2.0}), ("dkd", {"warmup_epochs": 0}), ("logit_std_kd", {}),
])
def test_gradcheck(logits, name, params):
    s, t, y = logits
    s = s.clone().requires_grad_()
    term = build_loss(name, **params)
    assert gradcheck(lambda x: term(make_inputs(student_logits=x, teacher_logits=t, targets=y)),
                     (s,))
