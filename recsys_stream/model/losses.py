"""What one training step of the model reports.

>>> StepLosses(ranking=2.5, rating=0.4).applied
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepLosses:
    """The losses of one micro-batch's step, per event, and whether the step was applied."""

    ranking: float
    """The weighted softmax loss of the next item."""
    rating: float
    """Half the squared rating error."""
    applied: bool = True
    """False when the loss was not finite: the step changed nothing (the parameters, their
    optimiser states and the step count are as before), so that one bad batch cannot spread
    NaN through the model, its checkpoints and the deltas a group's workers exchange."""
