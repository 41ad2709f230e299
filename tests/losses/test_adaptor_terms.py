"""Terms with learned adaptors: what build() creates, and values with known adaptor weights."""

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.losses import LOSSES, build_loss
from edgedistill.losses.reviewkd import hierarchical_context_loss

from .helpers import built, make_inputs


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def conv_shapes(module):
    return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_fitnet_builds_a_1x1_regressor_with_batch_norm_per_pair():
    s = [rand(2, 4, 8, 8), rand(2, 6)]
    t = [rand(2, 16, 4, 4), rand(2, 32)]
    term = built("fitnet", s, t)
    assert [conv_shapes(r) for r in term.regressors] == [[(16, 4, 1, 1)], [(32, 6, 1, 1)]]
    assert all(isinstance(r[1], nn.BatchNorm2d) for r in term.regressors)
    assert term(make_inputs(s, t)).item() > 0


def test_fitnet_value_with_known_regressor_and_pooled_student():
    s, t = rand(2, 2, 4, 4), rand(2, 3, 2, 2, seed=1)
    term = built("fitnet", [s], [t], batch_norm=False)
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    with torch.no_grad():
        term.regressors[0][0].weight.copy_(weight.view(3, 2, 1, 1))
        term.regressors[0][0].bias.zero_()
    pooled = s.numpy().reshape(2, 2, 2, 2, 2, 2).mean(axis=(3, 5))
    regressed = np.einsum("oc,nchw->nohw", weight.numpy(), pooled)
    expected = ((regressed - t.numpy()) ** 2).mean()
    assert term(make_inputs([s], [t])).item() == pytest.approx(expected, rel=1e-5)


def test_stage_limited_fitnet_and_ab_stop_after_their_epochs():
    s, t = rand(2, 4, 4, 4), rand(2, 8, 4, 4, seed=1)
    for name in ("fitnet", "ab"):
        term = built(name, [s], [t], stage_epochs=3)
        assert term(make_inputs([s], [t], epoch=2)).item() > 0
        late = term(make_inputs([s], [t], epoch=3))
        assert late.item() == 0.0 and not late.requires_grad


def test_hint_kd_is_the_weighted_sum_of_its_parts():
    s, t = rand(4, 4, 4, 4), rand(4, 8, 2, 2, seed=1)
    ls, lt = rand(4, 10, seed=2), rand(4, 10, seed=3)
    term = built("hint+kd", [s], [t], hint_weight=3.0, kd_weight=0.5, temperature=2.0)
    hint = built("fitnet", [s], [t])
    hint.load_state_dict(term.state_dict())
    inputs = make_inputs([s], [t], student_logits=ls, teacher_logits=lt)
    expected = 3.0 * hint(inputs) + 0.5 * build_loss("kd", temperature=2.0)(inputs)
    assert term(inputs).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ab_value_with_identity_connector():
    s = torch.tensor([-2.0, -0.5, 0.5, 2.0, -0.5, 0.5]).view(1, 6, 1, 1)
    t = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]).view(1, 6, 1, 1)
    term = built("ab", [s], [t], batch_norm=False)
    with torch.no_grad():
        term.connectors[0][0].weight.copy_(torch.eye(6).view(6, 6, 1, 1))
        term.connectors[0][0].bias.zero_()
    # teacher off: -2 is past the margin (0), -0.5 -> 0.5^2, 0.5 -> 1.5^2;
    # teacher on: 2 is past the margin (0), -0.5 -> 1.5^2, 0.5 -> 0.5^2
    expected = (0.25 + 2.25 + 2.25 + 0.25) / 6
    assert term(make_inputs([s], [t])).item() == pytest.approx(expected)


def test_vid_builds_regressor_and_variance_and_starts_at_init_variance():
    s, t = rand(2, 4, 4, 4), rand(2, 8, 4, 4, seed=1)
    term = built("vid", [s], [t])
    regressor = term.regressors[0]
    assert conv_shapes(regressor) == [(8, 4, 1, 1), (8, 8, 1, 1), (8, 8, 1, 1)]
    assert torch.allclose(regressor.variance().flatten(), torch.full((8,), 5.0))
    with torch.no_grad():
        regressor.mean[-1].weight.zero_()  # predicted mean 0
    expected = 0.5 * (np.log(5.0) + (t.numpy() ** 2).mean() / 5.0)
    assert term(make_inputs([s], [t])).item() == pytest.approx(expected, rel=1e-5)


def test_ft_builds_paraphraser_and_translator_at_the_paraphrase_rate():
    s, t = rand(2, 4, 4, 4), rand(2, 8, 2, 2, seed=1)
    term = built("ft", [s], [t])
    paraphraser, translator = term.paraphrasers[0], term.translators[0]
    assert conv_shapes(paraphraser.encoder)[-1][0] == 4
    assert conv_shapes(paraphraser.decoder)[-1][0] == 8
    assert conv_shapes(translator) == [(4, 4, 3, 3), (4, 4, 3, 3), (4, 4, 3, 3)]
    code = paraphraser.encoder(t)
    f_s = nn.functional.adaptive_avg_pool2d(translator(s), 2).flatten(1).detach().numpy()
    f_t = code.flatten(1).detach().numpy()
    f_s = f_s / np.linalg.norm(f_s, axis=1, keepdims=True)
    f_t = f_t / np.linalg.norm(f_t, axis=1, keepdims=True)
    transfer = np.abs(f_s - f_t).sum(axis=1).mean()
    reconstruction = ((paraphraser.decoder(code) - t) ** 2).mean().item()
    got = term(make_inputs([s], [t])).item()
    assert got == pytest.approx(transfer + reconstruction, rel=1e-5)


def test_ft_transfer_gradient_does_not_reach_the_paraphraser_encoder():
    s, t = rand(2, 4, 4, 4), rand(2, 8, 4, 4, seed=1)
    term = built("ft", [s], [t], reconstruction_weight=0.0)
    term(make_inputs([s], [t])).backward()
    assert all(not p.grad.any() for p in term.paraphrasers[0].parameters())
    assert all(p.grad.any() for p in term.translators[0].parameters())


def test_cc_and_fsp_build_projections_only_where_needed():
    cc = built("cc", [rand(2, 6)], [rand(2, 10, 3, 3)])
    assert tuple(cc.projections[0].weight.shape) == (10, 6)
    fsp = built("fsp", [rand(2, 4, 4, 4), rand(2, 8, 2, 2)], [rand(2, 4, 4, 4), rand(2, 16, 2, 2)])
    assert isinstance(fsp.adaptors[0], nn.Identity)
    assert tuple(fsp.adaptors[1].weight.shape) == (16, 8, 1, 1)


def test_reviewkd_builds_one_fusion_per_stage_and_fuses_all_but_the_deepest():
    s = [rand(2, 4, 8, 8), rand(2, 8, 4, 4), rand(2, 16)]
    t = [rand(2, 8, 8, 8), rand(2, 16, 4, 4), rand(2, 32)]
    term = built("reviewkd", s, t, mid_channels=6)
    assert [f.attention is not None for f in term.fusions] == [True, True, False]
    assert [conv_shapes(f.project)[0] for f in term.fusions] == [
        (8, 6, 3, 3), (16, 6, 3, 3), (32, 6, 3, 3)]
    assert term(make_inputs(s, t)).item() > 0


def test_reviewkd_defaults_are_mdistillers_cifar100_setting_and_it_warms_up():
    """mdistiller configs/cifar100/reviewkd.yaml: REVIEWKD_WEIGHT 5.0; cfg.py WARMUP_EPOCHS 20,
    scaled by min(epoch / 20, 1) with epochs from 1 (ours from 0)."""
    assert LOSSES.get("reviewkd").default_weight == 5.0
    s, t = [rand(2, 4, 4, 4), rand(2, 8)], [rand(2, 4, 4, 4, seed=1), rand(2, 8, seed=2)]
    term = built("reviewkd", s, t, mid_channels=4)
    assert term.warmup_epochs == 20
    full = built("reviewkd", s, t, mid_channels=4, warmup_epochs=0)
    full.load_state_dict(term.state_dict())
    plain = full(make_inputs(s, t, epoch=0)).item()
    assert term(make_inputs(s, t, epoch=0)).item() == pytest.approx(plain / 20, rel=1e-6)
    assert term(make_inputs(s, t, epoch=9)).item() == pytest.approx(plain / 2, rel=1e-6)
    assert term(make_inputs(s, t, epoch=19)).item() == pytest.approx(plain, rel=1e-6)
    assert term(make_inputs(s, t, epoch=50)).item() == pytest.approx(plain, rel=1e-6)


def test_hierarchical_context_loss_matches_numpy():
    s, t = rand(1, 2, 4, 4), rand(1, 2, 4, 4, seed=1)
    d = s.numpy() - t.numpy()
    full = (d**2).mean()
    level2 = (d.reshape(1, 2, 2, 2, 2, 2).mean(axis=(3, 5)) ** 2).mean()
    level1 = (d.mean(axis=(2, 3)) ** 2).mean()
    expected = (full + 0.5 * level2 + 0.25 * level1) / 1.75  # level 4 is not below H=4
    assert hierarchical_context_loss(s, t).item() == pytest.approx(expected, rel=1e-5)
