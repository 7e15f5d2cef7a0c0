"""Optimizers by name (`train.optimizer`): each entry takes the train settings and the LR schedule.

Register your own the same way:

    @OPTIMIZERS.register("lamb")
    def lamb(train, learning_rate):
        return keras.optimizers.Lamb(learning_rate, weight_decay=train.weight_decay)
"""
import keras

from arcface_keras.heads.partial_fc import RowSparseSGD
from arcface_keras.registry import OPTIMIZERS


@OPTIMIZERS.register("sgd")
def sgd(train, learning_rate):
    """Momentum SGD with decoupled weight decay; it moves only the sampled class centres of a Partial
    FC head (partial_fc.RowSparseSGD; exactly keras SGD otherwise)."""
    return RowSparseSGD(learning_rate, momentum=train.momentum, weight_decay=train.weight_decay or None)


@OPTIMIZERS.register("adamw")
def adamw(train, learning_rate):
    """keras AdamW with `train.weight_decay`."""
    return keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay)


def make_optimizer(train, learning_rate):
    """The optimizer `train.optimizer` names, for `learning_rate` (a float or a schedule)."""
    return OPTIMIZERS.get(train.optimizer)(train, learning_rate)
