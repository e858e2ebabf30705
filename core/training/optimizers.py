"""The optimizers the trainer offers: torch.optim's, without torch._dynamo on the first step.

torch.optim wraps ``step`` (``_use_grad_for_differentiable``) and ``add_param_group``,
``zero_grad``, ``state_dict``, ``load_state_dict`` (``torch._disable_dynamo``) so that
``torch.compile`` can trace them; each wrapper imports torch._dynamo on its first call,
which takes as long as importing torch itself (2-4 s on this project's machines, paid by
every process's first training step: the app's start-up, every ``train``). Outside
``torch.compile``, which this project never uses, the wrappers only turn gradient tracking
off around the update. These subclasses call the undecorated methods directly and do just
that, so the updates, the state dicts (the class name is not saved) and the results are
torch's, to the last bit (tests/core/test_optimizers.py compares them).
"""

from __future__ import annotations

from typing import Any

import torch

# Optimizer methods wrapped in torch._disable_dynamo (which imports torch._dynamo lazily).
DISABLED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def undecorated(cls: type, name: str) -> Any:
    """``cls.name`` without torch's compile wrapper (functools.wraps keeps it in __wrapped__)."""
    method = getattr(cls, name)
    return getattr(method, "__wrapped__", method)


def plain(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of ``cls`` whose methods never import torch._dynamo."""
    update = undecorated(cls, "step")

    def step(self, closure=None):
        # What _use_grad_for_differentiable does when not compiling: no autograd graph of
        # the update unless the optimizer is differentiable.
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return update(self, closure)

    namespace = {name: undecorated(torch.optim.Optimizer, name) for name in DISABLED}
    namespace.update(step=step, __doc__=f"torch.optim.{cls.__name__} without torch._dynamo (see module doc).",
                     __module__=__name__)
    return type(cls.__name__, (cls,), namespace)


OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": plain(torch.optim.SGD), "adam": plain(torch.optim.Adam), "rmsprop": plain(torch.optim.RMSprop)}
