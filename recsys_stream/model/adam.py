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
    def step(self) -> None:
        beta1, beta2 = self.betas
        for index, (parameter, first, second) in enumerate(
            zip(self.parameters, self.first, self.second, strict=True)
        ):
            if parameter.grad is None:
                continue
            self.steps[index] += 1
            correction1 = 1 - beta1 ** self.steps[index]
            correction2 = 1 - beta2 ** self.steps[index]
            gradient = parameter.grad
            first.mul_(beta1).add_(gradient, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (second / correction2).sqrt_().add_(self.eps)
            parameter.addcdiv_(first, denominator, value=-self.lr / correction1)

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
