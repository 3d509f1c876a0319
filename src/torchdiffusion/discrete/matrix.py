"""Kernels for ordinal data given by a table of K x K matrices: discretised Gaussian and nearest-neighbour D3PM.

Both are symmetric with rows summing to one, hence doubly stochastic, so uniform is stationary and the prior. The
tables hold Q_t and Qbar_t = Q_1 ... Q_t for t = 0..T in float64 (Q_0 = Qbar_0 = I): 2 (T + 1) K^2 numbers, e.g.
1 GB for 256 grey levels and T = 1000 (pass dtype=torch.float32 to halve it, or use fewer steps).
"""

from __future__ import annotations

import torch

from .process import CategoricalProcess
from .mutual_info import kernel_betas

Tensor = torch.Tensor


class MatrixProcess(CategoricalProcess):
    """A discrete-time process from one-step matrices Q_1..Q_T (each (K, K), rows distributions)."""

    def __init__(self, step_matrices: Tensor, dtype: torch.dtype = torch.float64):
        T, K, K2 = step_matrices.shape
        if K != K2:
            raise ValueError(f"step matrices must be square, got {tuple(step_matrices.shape)}")
        self.num_classes, self.num_steps = K, T
        eye = torch.eye(K, dtype=torch.float64)[None]
        self.Q = torch.cat([eye, step_matrices.double()]).to(dtype)  # (T + 1, K, K)
        bars = [eye[0]]
        for q in step_matrices.double():  # Qbar_t = Qbar_(t-1) Q_t, accumulated in float64
            bars.append(bars[-1] @ q)
        self.Qbar = torch.stack(bars).to(dtype)  # (T + 1, K, K)
        self._products: dict[tuple[int, int], Tensor] = {}

    @staticmethod
    def _steps(t: Tensor) -> Tensor:
        return torch.as_tensor(t).round().long()

    def matrix(self, s: float, t: float) -> Tensor:
        """Q_(s->t) = Q_(s+1) ... Q_t (cached per pair; Qbar_t and Q_t come straight from the tables)."""
        s, t = int(round(float(s))), int(round(float(t)))
        if not 0 <= s <= t <= self.num_steps:
            raise ValueError(f"need 0 <= s <= t <= {self.num_steps}, got s={s}, t={t}")
        if s == 0:
            return self.Qbar[t].double()
        if t == s + 1:
            return self.Q[t].double()
        if (s, t) not in self._products:
            m = torch.eye(self.num_classes, dtype=torch.float64)
            for k in range(s + 1, t + 1):
                m = m @ self.Q[k].double()
            self._products[(s, t)] = m
        return self._products[(s, t)]

    def _batch(self, s: Tensor, t: Tensor) -> Tensor:
        """(B, K, K) float64 matrices Q_(s->t) per sample."""
        s, t = self._steps(s).cpu(), self._steps(t).cpu()
        if bool((s == 0).all()):
            return self.Qbar[t].double()
        if bool((t == s + 1).all()):
            return self.Q[t].double()
        pairs = {p: self.matrix(*p) for p in set(zip(s.tolist(), t.tolist()))}
        return torch.stack([pairs[p] for p in zip(s.tolist(), t.tolist())])

    def forward(self, p: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """p Q_(s->t) per sample: (B, L, K) @ (B, K, K)."""
        return torch.bmm(p.double(), self._batch(s, t).to(p.device))

    def likelihood(self, x_t: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """Q_(s->t)[:, x_t]: row x_t of Q_(s->t)^T per position."""
        m_T = self._batch(s, t).transpose(1, 2).to(x_t.device)  # (B, K, K), row i = column i of Q
        return torch.gather(m_T, 1, x_t[..., None].expand(-1, -1, self.num_classes))

    def prior_probs(self) -> Tensor:
        return torch.full((self.num_classes,), 1.0 / self.num_classes, dtype=torch.float64)


def gaussian_matrix(K: int, beta: float) -> Tensor:
    """[Q]_ij ∝ exp(-4 (i - j)^2 / ((K - 1)^2 beta)) off the diagonal, normalised by the sum over n in [-(K-1), K-1],
    the diagonal taking the rest (Austin et al. 2021, appendix A.2.3). A token moves a Gaussian step of variance
    about (K - 1)^2 beta / 8 classes."""
    n = torch.arange(-(K - 1), K, dtype=torch.float64)
    z = torch.exp(-4 * n**2 / ((K - 1) ** 2 * beta)).sum()
    i = torch.arange(K, dtype=torch.float64)
    q = torch.exp(-4 * (i[:, None] - i[None, :]) ** 2 / ((K - 1) ** 2 * beta)) / z
    q.fill_diagonal_(0.0)
    return q + torch.diag(1 - q.sum(1))


def nearest_neighbour_matrix(K: int, rate: float) -> Tensor:
    """exp(rate R) with R the rate matrix of the path graph 0 - 1 - ... - (K-1): a token jumps to each neighbouring
    class at the given rate (Austin et al. 2021, sec. 3.2's nearest-neighbour kernel exp(alpha_t R) on an ordinal
    graph; its generator R is band-diagonal)."""
    r = torch.zeros(K, K, dtype=torch.float64)
    idx = torch.arange(K - 1)
    r[idx, idx + 1] = r[idx + 1, idx] = 1.0
    r -= torch.diag(r.sum(1))
    return torch.linalg.matrix_exp(rate * r)


class DiscretizedGaussian(MatrixProcess):
    """D3PM-Gauss: discretised Gaussian steps over K ordinal classes, linear beta_t by default (Austin et al. 2021);
    schedule "mutual_info" is solved against the data marginal `marginal` (K,) (None: uniform; mutual_info.py)."""

    def __init__(self, num_classes: int, T: int = 1000, schedule: str = "linear", dtype: torch.dtype = torch.float64,
                 marginal: Tensor | None = None, **schedule_options: float):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.schedule = schedule
        self.betas = kernel_betas(schedule, T, num_classes, lambda b: gaussian_matrix(num_classes, b), marginal,
                                  **schedule_options)
        super().__init__(torch.stack([gaussian_matrix(num_classes, float(b)) for b in self.betas[1:]]), dtype)


class NearestNeighbour(MatrixProcess):
    """Nearest-neighbour D3PM on an ordinal line: Q_t = exp(rate_t R), R band-diagonal (the path graph).

    rate_t = (K - 1)^2 beta_t / 16 gives each step the variance (2 rate_t classes^2) of the discretised Gaussian's
    step with the same beta_t, so the two kernels share schedules.
    """

    def __init__(self, num_classes: int, T: int = 1000, schedule: str = "linear", dtype: torch.dtype = torch.float64,
                 marginal: Tensor | None = None, **schedule_options: float):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.schedule = schedule
        self.betas = kernel_betas(schedule, T, num_classes, lambda b: nearest_neighbour_matrix(
            num_classes, (num_classes - 1) ** 2 * b / 16), marginal, **schedule_options)
        self.rates = (num_classes - 1) ** 2 * self.betas / 16
        super().__init__(torch.stack([nearest_neighbour_matrix(num_classes, float(r)) for r in self.rates[1:]]), dtype)
