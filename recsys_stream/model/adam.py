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
        # The parameters and both moments are views of three flat tensors: a step on which
        # every parameter has a gradient is a few operations on those, not a few per tensor
        # (on the CPU, ``_foreach`` kernels loop over the tensors).
        values = _flatten(self.parameters)
        self._flat = (
            None if values is None else (values, torch.zeros_like(values), torch.zeros_like(values))
        )
        """The parameters, the first and the second moments, each as one flat tensor."""
        self.first = _views(None if self._flat is None else self._flat[1], self.parameters)
        self.second = _views(None if self._flat is None else self._flat[2], self.parameters)

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
        for i in chosen:
            self.steps[i] += 1
        if (
            self._flat is not None
            and len(chosen) == len(self.parameters)
            and len(set(self.steps)) == 1
        ):
            values, first, second = self._flat
            step = self.steps[0]
            grad = torch.cat([g.reshape(-1) for g in grads])
            if grad_scale != 1.0:
                grad.mul_(grad_scale)
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (second / (1 - beta2**step)).sqrt_().add_(self.eps)
            values.addcdiv_(first, denominator, value=-self.lr / (1 - beta1**step))
            return
        if grad_scale != 1.0:
            torch._foreach_mul_(grads, grad_scale)
        firsts = [self.first[i] for i in chosen]
        seconds = [self.second[i] for i in chosen]
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
        with torch.no_grad():
            for moments, saved in ((self.first, state["first"]), (self.second, state["second"])):
                for moment, value in zip(moments, saved, strict=True):
                    moment.copy_(value)


def _flatten(parameters: list[torch.nn.Parameter]) -> torch.Tensor | None:
    """One tensor holding every parameter, each parameter made a view of it (None when they
    differ in dtype or device: they stay as they are)."""
    if not parameters or len({(p.dtype, p.device) for p in parameters}) > 1:
        return None
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in parameters])
    for parameter, view in zip(parameters, _views(flat, parameters), strict=True):
        parameter.data = view
    return flat


def _views(flat: torch.Tensor | None, like: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Consecutive views of ``flat`` shaped as the tensors ``like`` (zeros of their shapes when
    there is no flat tensor)."""
    if flat is None:
        return [torch.zeros_like(p) for p in like]
    views, offset = [], 0
    for tensor in like:
        views.append(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()
    return views
