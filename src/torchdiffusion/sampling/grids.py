"""Step grids: pure functions returning decreasing sigma tensors (VE noise levels) ending in 0."""

from __future__ import annotations

import math
from typing import Protocol

import torch

Tensor = torch.Tensor


class TimedProcess(Protocol):
    """What `uniform_t` needs of a process: its time range and its VE noise level sigma_ve(t)."""

    t_min: float
    t_max: float

    def sigma_ve(self, t: Tensor) -> Tensor: ...


def append_zero(sigmas: Tensor) -> Tensor:
    """Append the final noise level 0 (the data)."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho (Karras et al. 2022, eq. 5)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float, knee: float = math.inf, first: float = math.inf) -> Tensor:
    """Uniform in v = log(sigma / (sigma + knee)): uniform in log sigma (log-SNR in VE coordinates) well below knee,
    coarsening above it, where v ~ -knee / sigma; knee = inf is exactly log-uniform. `first` caps the first step's
    ratio sigma_0 / sigma_1: where the grid's is larger, sigma_max is followed by this grid's n - 1 levels from
    sigma_max / first down (the cap is waived where n < 3 or sigma_max / first <= sigma_min).

    Exponential integrators are exact while D(x, sigma) is constant in sigma, and D = mu + Sigma (x - mu) / sigma^2
    + O(sigma^-4) far above the data scale, so steps there can grow; knee = 10 sigma_data was selected on Gaussian
    mixtures (docs/samplers.md, "Grid knee"). A trained network's x0 error grows with sigma, and one long first step
    from sigma_max carries it into states the network never saw, hence the cap (docs/samplers.md, "The default
    sampler on a trained eps-prediction model"). The inverse is closed form: sigma = knee e^v / (1 - e^v).
    """
    if n < 1 or not 0 < sigma_min <= sigma_max or not knee > 0 or not first > 1:
        raise ValueError(f"need n >= 1, 0 < sigma_min <= sigma_max, knee > 0 and first > 1, got {n}, {sigma_min}, "
                         f"{sigma_max}, {knee}, {first}")
    if n >= 3 and sigma_max / first > sigma_min:
        g = exponential(n, sigma_min, sigma_max, knee)
        if float(g[0] / g[1]) > first:
            return torch.cat([g[:1], exponential(n - 1, sigma_min, sigma_max / first, knee)])
        return g
    if n == 1:  # one level is sigma_max (the endpoint fix below would overwrite it with sigma_min)
        return append_zero(torch.tensor([sigma_max], dtype=torch.float64))
    if math.isinf(knee):
        return append_zero(torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64)))
    v = lambda s: math.log(s) - math.log(s + knee)  # noqa: E731
    e = torch.exp(torch.linspace(v(sigma_max), v(sigma_min), n, dtype=torch.float64))
    sig = knee * e / (1 - e)
    sig[0], sig[-1] = sigma_max, sigma_min  # exact endpoints despite rounding
    return append_zero(sig)


def fewstep(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """n levels uniform in u = sigma / (1 + sigma) from sigma_max down, excluding u = 0, then 0: the grid few-step
    students are distilled on and sampled with (progressive distillation, reflow, multistep consistency).

    u is the linear-flow time of sigma (x_t = (1 - u) x0 + u eps has sigma_ve = u / (1 - u)), so for a flow this
    is uniform in t (Liu et al. 2023); grids of n and 2n steps nest, as progressive distillation's halving needs
    (Salimans & Ho 2022, Alg. 2). sigma_min is not used: the lowest level is u_max / n.
    """
    if n < 1 or not 0 < sigma_max < math.inf:
        raise ValueError(f"need n >= 1 and a finite sigma_max > 0, got {n}, {sigma_max}")
    u_max = sigma_max / (1 + sigma_max)
    u = u_max * (1 - torch.arange(n, dtype=torch.float64) / n)
    sig = u / (1 - u)
    sig[0] = sigma_max  # exact despite rounding
    return append_zero(sig)


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """log sigma interpolated with a polynomial ramp of power rho (rho = 1 is exponential)."""
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def default_tail(nfe: int, sigma_data: float, f_max: float = 0.04, knee: float = 15.0) -> float:
    """The last nonzero sigma of a default grid for a budget of nfe calls: sigma_data f_max min(1, (knee / nfe)^3).

    Every deterministic sampler ends with a step to 0 that lands on (or extrapolates to) D(x, sigma_last); steps
    spent below a few hundredths of the data scale buy little at small budgets, so with few calls the grid stops
    there, and as nfe grows the tail falls fast (as nfe^-3) back towards sigma_min, so that fine data scales are
    resolved at large budgets. f_max was selected on held-out Gaussian mixtures (docs/samplers.md, "Grid tail"),
    knee = 15 (first 20) with UniPC on the tuning problems of the held-out protocol (docs/samplers.md, "Re-choosing
    the rule on 16 tuning problems"); callers clamp the result to [sigma_min, sigma_max).
    """
    if nfe < 1 or sigma_data <= 0:
        raise ValueError(f"need nfe >= 1 and sigma_data > 0, got nfe={nfe}, sigma_data={sigma_data}")
    return sigma_data * f_max * min(1.0, (knee / nfe) ** 3)


def nearest_in_table(sigmas: Tensor, table: Tensor) -> Tensor:
    """Each nonzero sigma moved to the table entry nearest in log sigma (decreasing, final 0 kept).

    This is how k-diffusion's discrete schedules respace a DDPM table at chosen noise levels: a model trained on
    integer steps is then only asked at its own levels. Where two sigmas would share a level (the table is sparse at
    its ends), the lower one takes the next level down, so the grid keeps its number of steps and the budget is spent.
    """
    nz = sigmas[sigmas > 0]
    log_t = table.double().log()
    nearest = (nz.double().log()[:, None] - log_t[None, :]).abs().argmin(dim=1).tolist()
    idx: list[int] = []
    for j in nearest:  # table ascending in sigma: strictly decreasing indices, as long as levels remain
        j = min(j, idx[-1] - 1) if idx else j
        if j < 0:
            break
        idx.append(j)
    return append_zero(table.double()[torch.tensor(idx, dtype=torch.long)])


def uniform_t(process: TimedProcess, n: int, t_min: float | None = None, t_max: float | None = None) -> Tensor:
    """n times uniform in the process's t from t_max to t_min, mapped to sigma_ve (Song et al. 2021)."""
    t = torch.linspace(process.t_max if t_max is None else t_max,
                       process.t_min if t_min is None else t_min, n, dtype=torch.float64)
    return append_zero(process.sigma_ve(t))


def uniform_logsnr(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log-SNR lambda = -2 log sigma_ve (Lu et al. 2022, DPM-Solver's recommended grid)."""
    return exponential(n, sigma_min, sigma_max)


def respaced_timesteps(T: int, n: int, spacing: str = "leading", steps_offset: int = 0) -> Tensor:
    """n integer steps out of T, decreasing: "linspace", "leading" or "trailing" (Lin et al. 2024, Table 2)."""
    if not 1 <= n <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {n}")
    if spacing == "linspace":
        ts = torch.linspace(0, T - 1, n, dtype=torch.float64).round().long()
    elif spacing == "leading":
        ts = torch.arange(n, dtype=torch.long) * (T // n) + steps_offset
    elif spacing == "trailing":
        ts = (torch.arange(T, 0, -T / n, dtype=torch.float64).round().long() - 1).flip(0)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose linspace, leading or trailing")
    return ts.clamp(0, T - 1).flip(0)


def discrete_sigmas(table: Tensor, n: int | None = None, spacing: str = "leading", steps_offset: int = 0) -> Tensor:
    """The levels of an ascending table of T VE sigmas (a DDPM model's `sigma_table`, `DiscreteVP.sigmas_ve`) at a
    respacing of its steps (all T when n is None), decreasing, ending in 0."""
    T = len(table)
    ts = torch.arange(T - 1, -1, -1) if n is None else respaced_timesteps(T, n, spacing, steps_offset)
    return append_zero(table[ts])
