"""How models are named, ordered and coloured in every table, legend and plot."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

LEARNER: Final = "learner"
RECENT_POPULAR: Final = "recent_popular"
MODEL_ORDER: Final = (LEARNER, "most_popular", RECENT_POPULAR, "cooc_knn")
"""Models in the order every table and legend shows them; unknown models follow, by name."""

DISPLAY_NAMES: Final = {
    LEARNER: "Learner (contextual NeuMF)",
    "most_popular": "MostPopular",
    RECENT_POPULAR: "RecentPopular (30 d)",
    "cooc_knn": "Co-occurrence kNN",
}

_COLOURS: Final = {
    LEARNER: "#d62728",
    "most_popular": "#7f7f7f",
    RECENT_POPULAR: "#1f77b4",
    "cooc_knn": "#2ca02c",
}
_SPARE_COLOURS: Final = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def display_name(model: str) -> str:
    """The name a reader sees for ``model``; an unknown model keeps its own name."""
    return DISPLAY_NAMES.get(model, model)


def ordered_models(names: Iterable[str]) -> list[str]:
    """``names`` in :data:`MODEL_ORDER`, unknown ones after, alphabetically, so output is stable.

    >>> ordered_models(["cooc_knn", "zeta", "learner", "alpha"])
    ['learner', 'cooc_knn', 'alpha', 'zeta']
    """
    present = set(names)
    known = [name for name in MODEL_ORDER if name in present]
    return known + sorted(present - set(MODEL_ORDER))


def colour(name: str, names: Sequence[str]) -> str:
    """A model's colour: fixed for the known ones, the spare palette in order for the rest."""
    if name in _COLOURS:
        return _COLOURS[name]
    spare = [other for other in names if other not in _COLOURS]
    return _SPARE_COLOURS[spare.index(name) % len(_SPARE_COLOURS)]
