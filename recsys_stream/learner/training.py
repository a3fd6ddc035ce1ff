"""Training in epochs over the stored event log: what full retrains and offline training do.

Online learning sees each event once, in order; :func:`fit_stored_events` revisits every event
the log holds, in shuffled mini-batches, each with the context its user had before it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys_stream.learner.features import StreamFeatures
from recsys_stream.model import ContextualNeuMF


def fit_stored_events(
    model: ContextualNeuMF,
    features: StreamFeatures,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    should_stop: Callable[[], bool] = lambda: False,
    whole_history: bool = False,
) -> int:
    """Learn every event stored in ``features`` for ``epochs`` in shuffled mini-batches.

    Returns the number of distinct events learned (the size of the log).
    """
    lengths = features.sequences.lengths(np.arange(features.sequences.n_users))
    users = np.repeat(np.arange(len(lengths)), lengths)
    positions = np.arange(len(users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    model.ensure_rows(len(features.users), features.items.ids)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(users))
        for start in range(0, len(order), batch_size):
            if should_stop():
                return 0
            chosen = order[start : start + batch_size]
            inputs = features.training_inputs(
                users[chosen], positions[chosen], model.device, whole_history=whole_history
            )
            model.learn(inputs)
    return len(users)
