"""The online learner: the contextual NeuMF learned from every micro-batch, its log-derived
features, a replay reservoir against forgetting, background full retrains, item state shared
between trainer workers, refits a group of workers adopts, users handed over when their
partition moves, and the same model trained in batch for the offline protocols.

>>> from recsys_stream.events import EventBatch
>>> from recsys_stream.settings import LearnerConfig, ModelConfig
>>> learner = OnlineLearner(LearnerConfig(model=ModelConfig(dim=8, context_length=4)))
>>> learner.learn(EventBatch.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 4.0, 3.0], [0, 1, 2]))
>>> learner.events_learned
3
"""

from recsys_stream.learner.device import resolve_device
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.handover import UserStates, export_users, import_users
from recsys_stream.learner.offline import OfflineLearner
from recsys_stream.learner.online import OnlineLearner
from recsys_stream.learner.refit import ModelBase, adopt_base, relearn_since
from recsys_stream.learner.replay_buffer import ReplayBuffer
from recsys_stream.learner.retrain import BackgroundRetrain
from recsys_stream.learner.sharing import ItemDelta, ItemSharing, RetrainNotShareableError
from recsys_stream.learner.statistics import RatingStatistics
from recsys_stream.learner.training import fit_stored_events

__all__ = [
    "BackgroundRetrain",
    "ItemDelta",
    "ItemSharing",
    "ModelBase",
    "OfflineLearner",
    "OnlineLearner",
    "RatingStatistics",
    "ReplayBuffer",
    "RetrainNotShareableError",
    "StreamFeatures",
    "UserStates",
    "adopt_base",
    "export_users",
    "fit_stored_events",
    "import_users",
    "relearn_since",
    "resolve_device",
]
