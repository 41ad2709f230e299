"""Every registered term, minimised for a few Adam steps, goes down: gradients reach the student
(and the adaptors) with the right sign."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.losses import LOSSES, LossInputs, build_loss

MAPS = ["f1", "f2"]
LAYERS = {
    "fitnet": ["f2"], "hint+kd": ["f2"], "vid": ["f2"], "ft": ["f2"], "at": MAPS, "nst": MAPS,
    "ab": ["f3"], "fsp": ["f1", "f2", "f2", "f3"], "reviewkd": ["f1", "f2", "f3", "emb"],
    "sp": ["emb"], "pkt": ["emb"], "rkd": ["emb"], "cc": ["emb"], "crd": ["emb"],
}
PARAMS = {"crd": {"queue_size": 16}, "reviewkd": {"mid_channels": 8}}
# A random teacher's pooled embeddings of noise are nearly collinear (cosine ~0.9), so crd's
# heads spend their first steps learning to spread them before InfoNCE falls.
STEPS = {"crd": 60}


class TinyNet(nn.Module):
    """Three conv stages; returns logits and the tensors a config would hook."""

    def __init__(self, width: int):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.down1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * width, 10)

    def forward(self, x):
        f1 = F.relu(self.stem(x))
        f2 = F.relu(self.down1(f1))
        f3 = self.down2(f2)  # pre-activation, as ab wants
        emb = F.relu(f3).mean(dim=(2, 3))
        return self.fc(emb), {"f1": f1, "f2": f2, "f3": f3, "emb": emb}


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_few_adam_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    student, teacher = TinyNet(4), TinyNet(8).eval()
    x, y, idx = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,)), torch.arange(16)
    layers = LAYERS.get(name, [])
    with torch.no_grad():
        t_logits, t_feats = teacher(x)
    term = build_loss(name, student_layers=layers, teacher_layers=layers, **PARAMS.get(name, {}))

    def inputs():
        logits, feats = student(x)
        return LossInputs(logits, t_logits, [feats[k] for k in layers],
                          [t_feats[k] for k in layers], y, idx, epoch=0)

    with torch.no_grad():
        first = inputs()
    term.build([f.shape for f in first.student_features],
               [f.shape for f in first.teacher_features])
    with torch.no_grad():
        term(first)  # fills crd's queue, so every recorded step sees as many negatives
    optimizer = torch.optim.Adam([*student.parameters(), *term.parameters()], lr=1e-2)
    losses = []
    for _ in range(STEPS.get(name, 30)):
        loss = term(inputs())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = term(inputs()).item()
    assert final < losses[0] - 0.02 * abs(losses[0]), losses
