"""The learned pose rescoring network of the 2020 regression paper ("joint shape and heat-value
scoring", PredictOKSNet in the reference, identical in DEKR): a pose's feature vector (limb vectors
and lengths, joint scores) to its predicted OKS against the ground truth.

Keys l1.*, l2.*, l3.* as in the official final_rescore_*.pth files.
"""

from __future__ import annotations

from torch import Tensor, nn

# The reference's RESCORE.HIDDEN_LAYER.
DEFAULT_HIDDEN = 256


class RescoreNet(nn.Module):
    """Linear(F, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, 1)."""

    def __init__(self, in_features: int, hidden: int = DEFAULT_HIDDEN) -> None:
        super().__init__()
        self.l1 = nn.Linear(in_features, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights with a = 1 and zero biases, the reference's initialisation."""
        for layer in (self.l1, self.l2, self.l3):
            nn.init.kaiming_uniform_(layer.weight, a=1)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> Tensor:
        """(N, F) pose features -> (N, 1) predicted OKS."""
        hidden = self.relu(self.l1(features))
        hidden = self.relu(self.l2(hidden))
        return self.l3(hidden)
