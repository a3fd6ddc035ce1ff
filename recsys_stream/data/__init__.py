"""Rating data: the MovieLens variants, synthetic MovieLens-like streams and files of one's own
ratings, as one type.

:func:`load_dataset`, :func:`generate_synthetic` and :func:`load_ratings_file` return a
:class:`Dataset` whose
``ratings`` frame (user_id, item_id, rating, timestamp) is in stream order.

>>> from recsys_stream.data import generate_synthetic
>>> generate_synthetic(500, n_users=20, n_items=100, seed=1).ratings.dtypes
user_id        int64
item_id        int64
rating       float32
timestamp      int64
dtype: object
"""

from recsys_stream.data._download import (
    DatasetChecksumError,
    DatasetError,
    DatasetUnavailableError,
    UnknownDatasetError,
)
from recsys_stream.data.movielens import (
    RATINGS_DTYPES,
    VARIANTS,
    Dataset,
    Variant,
    load_dataset,
)
from recsys_stream.data.named import SyntheticSpec, load_dataset_from_settings
from recsys_stream.data.presets import PRESETS, SyntheticPreset
from recsys_stream.data.profile import StreamProfile
from recsys_stream.data.ratings_file import load_ratings_file
from recsys_stream.data.synthetic import SyntheticConfig, generate_synthetic

__all__ = [
    "PRESETS",
    "RATINGS_DTYPES",
    "VARIANTS",
    "Dataset",
    "DatasetChecksumError",
    "DatasetError",
    "DatasetUnavailableError",
    "StreamProfile",
    "SyntheticConfig",
    "SyntheticPreset",
    "SyntheticSpec",
    "UnknownDatasetError",
    "Variant",
    "generate_synthetic",
    "load_dataset",
    "load_dataset_from_settings",
    "load_ratings_file",
]
