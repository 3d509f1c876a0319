"""Couplings of data and noise in a minibatch: independent (conditional flow matching) or exact optimal transport
(OT-CFM: Tong et al. 2024, Alg. 3; Pooladian et al. 2023), solved by POT's network simplex (`ot.emd`)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor
COUPLINGS = ("independent", "ot")


def ot_permutation(x0: Tensor, eps: Tensor) -> Tensor:
    """The permutation j of eps's rows minimising sum_i ||x0_i - eps_j(i)||^2: exact OT between the two uniform
    empirical measures of equal size, whose optimal plan is a permutation matrix / B (Birkhoff-von Neumann)."""
    import ot  # POT: Python Optimal Transport

    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
    B = x0.shape[0]
    cost = torch.cdist(x0.flatten(1).double().cpu(), eps.flatten(1).double().cpu()).pow(2).numpy()  # (B, B)
    w = torch.full((B,), 1.0 / B, dtype=torch.float64).numpy()
    plan = ot.emd(w, w, cost)  # (B, B), an extreme point of the transport polytope: a permutation / B
    return torch.as_tensor(plan).argmax(dim=1).to(x0.device)


def couple(coupling: str, x0: Tensor, eps: Tensor) -> Tensor:
    """The noise paired with each row of x0: eps as drawn ("independent") or re-ordered by minibatch OT ("ot")."""
    if coupling == "independent":
        return eps
    if coupling == "ot":
        return eps[ot_permutation(x0, eps)]
    raise ValueError(f"unknown coupling {coupling!r}; choose one of {', '.join(COUPLINGS)}")
