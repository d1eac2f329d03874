"""`PatiencePolicy`: leave once enough consecutive exits agree (PABEE)."""

import numbers

from tfee import rules
from tfee._checks import check_int
from tfee.policy.base_policy import Policy

__all__ = ["PatiencePolicy"]


class PatiencePolicy(Policy):
    """Leave once `patience` consecutive exits agree on the class (PABEE).

    Zhou et al. (2020), "BERT loses patience". A sample leaves at exit k when
    exits k-patience+1 .. k all predict the same class (PABEE's patience t is
    `patience - 1` here); exits with non-finite logits break the streak. The
    deepest exit takes every remaining sample.

    Args:
      patience: how many consecutive exits must agree, 1..num_exits
        (1 = everyone leaves at the first exit).
      num_exits: K, the network's number of exits.

    Raises:
      ValueError: patience or num_exits not a positive int, or
        patience > num_exits.
    """

    kind = "patience"

    def __init__(self, patience, num_exits):
        api = "tfee.PatiencePolicy"
        num_exits = check_int(num_exits, "num_exits", api)
        if (
            isinstance(patience, bool)
            or not isinstance(patience, numbers.Integral)
            or not 1 <= patience <= num_exits
        ):
            raise ValueError(
                f"{api}: `patience` must be an int in [1, num_exits={num_exits}]. "
                f"Received: patience={patience!r}"
            )
        super().__init__(num_exits)
        self.patience = int(patience)
        self.rule = "patience"

    def _decide(self, state, rows, exit_index, logits, confidence):
        predicted = rules.predictions(logits)
        streak = state.streak.copy()
        previous = state.previous.copy()
        streak[rows] = rules.streak(state.previous[rows], state.streak[rows], predicted)
        previous[rows] = predicted
        return streak[rows] >= self.patience, {"streak": streak, "previous": previous}

    def to_dict(self):
        return {
            **self._header(),
            "patience": self.patience,
        }

    @classmethod
    def _from_dict(cls, data):
        if data.get("ensemble") is not None:
            raise ValueError(
                "tfee.policy.Policy.from_json: a patience policy counts agreeing exits "
                "and takes no ensemble. Received: a patience policy with "
                '"ensemble"'
            )
        return cls(data.get("patience"), data.get("num_exits"))

    def __repr__(self):
        return f"PatiencePolicy(patience={self.patience}, num_exits={self.num_exits})"
