"""A minimal Adam for the model's few dense parameters.

``torch.optim`` pulls in torch's compiler stack on first use (seconds of start-up on a small
machine, for every CLI call and test process); the dense part of the model is a handful of small
tensors, for which these few lines do the same job.

>>> weight = torch.nn.Parameter(torch.tensor([1.0]))
>>> optimizer = Adam([weight], lr=0.1)
>>> (2 * weight).sum().backward()
>>> optimizer.step()
>>> round(weight.item(), 4)
0.9
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction; no weight decay."""

    def __init__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.parameters = list(parameters)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        # Per parameter, as torch.optim does: a parameter without a gradient does not step.
        self.steps = [0] * len(self.parameters)
        self.first = [torch.zeros_like(p) for p in self.parameters]
        self.second = [torch.zeros_like(p) for p in self.parameters]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self, grad_scale: float = 1.0) -> None:
        """One update of every parameter that has a gradient (multiplied by ``grad_scale``).

        The parameters are a dozen small tensors: the ``_foreach`` kernels update them all in a
        few calls, where a loop would launch eight small operations per tensor.
        """
        beta1, beta2 = self.betas
        chosen = [i for i, parameter in enumerate(self.parameters) if parameter.grad is not None]
        if not chosen:
            return
        parameters: list[torch.Tensor] = [self.parameters[i] for i in chosen]
        grads = [p.grad for p in parameters if p.grad is not None]
        if grad_scale != 1.0:
            torch._foreach_mul_(grads, grad_scale)
        firsts = [self.first[i] for i in chosen]
        seconds = [self.second[i] for i in chosen]
        for i in chosen:
            self.steps[i] += 1
        torch._foreach_mul_(firsts, beta1)
        torch._foreach_add_(firsts, grads, alpha=1 - beta1)
        torch._foreach_mul_(seconds, beta2)
        torch._foreach_addcmul_(seconds, grads, grads, value=1 - beta2)
        corrections2 = [1 - beta2 ** self.steps[i] for i in chosen]
        denominators = torch._foreach_div(seconds, corrections2)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, self.eps)
        steps = [-self.lr / (1 - beta1 ** self.steps[i]) for i in chosen]
        torch._foreach_addcdiv_(parameters, firsts, denominators, steps)

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "first": [t.cpu().clone() for t in self.first],
            "second": [t.cpu().clone() for t in self.second],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [int(step) for step in state["steps"]]
        device = self.parameters[0].device if self.parameters else torch.device("cpu")
        self.first = [t.to(device) for t in state["first"]]
        self.second = [t.to(device) for t in state["second"]]
