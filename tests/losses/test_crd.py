"""CRD: heads, the fixed-length queue, and InfoNCE with masked negatives."""

import numpy as np
import pytest
import torch

from .helpers import built, make_inputs


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def crd(queue_size, batch=2, **params):
    s, t = rand(batch, 4, 2, 2), rand(batch, 6, seed=1)
    return built("crd", [s], [t], feat_dim=3, queue_size=queue_size, **params)


def step(term, indices, seed):
    s, t = rand(len(indices), 4, 2, 2, seed=seed), rand(len(indices), 6, seed=seed + 100)
    return term(make_inputs([s], [t], indices=torch.tensor(indices)))


def test_heads_and_checkpointed_queue_buffers():
    term = crd(queue_size=8)
    assert tuple(term.student_heads[0].weight.shape) == (3, 4)
    assert tuple(term.teacher_heads[0].weight.shape) == (3, 6)
    state = term.state_dict()
    assert tuple(state["student_queue"].shape) == (1, 8, 3)
    assert tuple(state["teacher_queue"].shape) == (1, 8, 3)
    assert state["queue_indices"].tolist() == [-1] * 8
    assert state["queue_pointer"].item() == 0


def test_queue_keeps_its_length_and_cycles():
    term = crd(queue_size=5)
    for n, indices in enumerate(([0, 1], [2, 3], [4, 5])):
        step(term, indices, seed=n)
        assert term.teacher_queue.shape == (1, 5, 3)
    assert term.queue_indices.tolist() == [5, 1, 2, 3, 4]
    assert term.queue_pointer.item() == 1
    norms = term.student_queue[0].norm(dim=1)
    assert torch.allclose(norms, torch.ones(5))


def test_a_batch_larger_than_the_queue_keeps_its_last_rows():
    term = crd(queue_size=5, batch=7)
    step(term, list(range(10, 17)), seed=0)
    assert term.queue_indices.tolist() == [12, 13, 14, 15, 16]
    assert term.queue_pointer.item() == 0


def test_eval_mode_leaves_the_queue_alone():
    term = crd(queue_size=4).eval()
    step(term, [0, 1], seed=0)
    assert term.queue_indices.tolist() == [-1] * 4


def test_info_nce_masks_empty_slots_and_the_anchor_s_own_copies():
    tau = 0.5
    term = crd(queue_size=4, temperature=tau)
    step(term, [0, 1], seed=0)
    queued_s = term.student_queue[0, :2].numpy().copy()
    queued_t = term.teacher_queue[0, :2].numpy().copy()
    s, t = rand(2, 4, 2, 2, seed=1), rand(2, 6, seed=101)
    with torch.no_grad():
        e_s = torch.nn.functional.normalize(term.student_heads[0](s.mean((2, 3))), dim=1).numpy()
        e_t = torch.nn.functional.normalize(term.teacher_heads[0](t), dim=1).numpy()
    indices = [2, 0]

    def direction(anchors, keys, queue):
        total = 0.0
        for i in range(2):
            candidates = [keys[j] for j in range(2)]
            candidates += [queue[q] for q, idx in enumerate([0, 1]) if idx != indices[i]]
            logits = np.array([anchors[i] @ c / tau for c in candidates])
            total += -logits[i] + np.log(np.exp(logits).sum())
        return total / 2

    expected = direction(e_s, e_t, queued_t) + direction(e_t, e_s, queued_s)
    got = term(make_inputs([s], [t], indices=torch.tensor(indices))).item()
    assert got == pytest.approx(expected, rel=1e-5)
