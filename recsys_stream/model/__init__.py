"""The contextual neural matrix factorization: its inputs, parameters, scores and training step.

:class:`ContextualNeuMF` is a NeuMF whose user is also their recent items (see
:mod:`recsys_stream.model.neumf` for the equations); :class:`BatchInputs` is one micro-batch as
it reads it; :class:`EmbeddingTable` is a growing table trained by sparse Adagrad; :class:`Adam`
trains the few dense parameters; :class:`StepLosses` is what one training step reports.
"""

from recsys_stream.model.adam import Adam
from recsys_stream.model.inputs import BatchInputs
from recsys_stream.model.losses import StepLosses
from recsys_stream.model.neumf import ContextualNeuMF
from recsys_stream.model.tables import EmbeddingTable

__all__ = ["Adam", "BatchInputs", "ContextualNeuMF", "EmbeddingTable", "StepLosses"]
