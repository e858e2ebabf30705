"""The trainer's optimizers are torch.optim's, bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.training.optimizers import OPTIMIZER_CLASSES

ROOT = Path(__file__).resolve().parents[2]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def trained(cls, steps: int = 5):
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 4)
    optimizer = cls(model.parameters(), lr=0.01, foreach=True)
    x = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model(x)[0].pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CLASSES))
def test_the_same_updates_and_state_as_torch_optim(name):
    ours, theirs = OPTIMIZER_CLASSES[name], TORCH[name]
    assert issubclass(ours, theirs)
    model_a, opt_a = trained(ours)
    model_b, opt_b = trained(theirs)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)
        assert not a.requires_grad or a.grad is None or not a.grad.requires_grad  # no graph of the update
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    for key in state_b["state"]:
        for field, value in state_b["state"][key].items():
            assert torch.equal(torch.as_tensor(state_a["state"][key][field]), torch.as_tensor(value))
    restored = ours(model_a.parameters(), lr=0.01, foreach=True)
    restored.load_state_dict(state_b)  # a session saved by either loads into the other
    assert restored.state_dict()["param_groups"] == state_b["param_groups"]


def test_building_and_training_never_imports_torch_dynamo():
    """torch.optim's wrappers import torch._dynamo (2-4 s) on the first step of every process."""
    code = ("import sys, tempfile, os;"
            "from core.training.trainer import Trainer; from core.config import Experiment;"
            "from core.session.format import save_session, open_session;"
            "t = Trainer(Experiment(task='adding', hidden_size=8, seq_len=10, batch_size=4));"
            "t.step(probe=True, gradients=True, spectrum=True); t.step();"
            "p = os.path.join(tempfile.mkdtemp(), 's.rnnx'); save_session(t, p); open_session(p).step();"
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)
