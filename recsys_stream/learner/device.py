"""Which torch device the learner runs on."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``cuda`` when available, else ``cpu``, for ``"auto"``; otherwise the named device.

    >>> resolve_device("cpu").type
    'cpu'
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
