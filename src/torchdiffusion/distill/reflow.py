"""Rectified flow's reflow (Liu et al. 2023, sec. 2.3): draw (noise, sample) pairs by a teacher's probability-flow
ODE and train on those pairs' straight paths, x_t = (1 - t) x1 + t z, which straightens its paths so that few Euler
steps suffice; and the straightness of a denoiser's paths (Liu et al. 2023, eq. 7), measured in flow time."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ..denoiser import Conditioned, describe
from ..inverse.editing import slerp
from ..losses.consistency import DISTANCES, pseudo_huber_of
from ..losses.denoising import diffusion_loss, sample_t
from ..model_denoiser import ModelDenoiser
from ..nn.mode import evaluating
from ..rng import randn
from ..sampling import sample
from ..sampling.grids import fewstep
from ..train.ema import ema_decay_at, make_ema, update_ema

Tensor = torch.Tensor


@torch.no_grad()
def reflow_pairs(teacher: Any, z: Tensor, *, method: str = "heun", nfe: int = 63, batch_size: int = 128,
                 max_cpu_seconds: float | None = None, **cond: Any) -> Tensor:
    """x1 = the teacher's ODE map of the flow noise z (B, ...): started at its sigma_max from sigma_max * z (its
    prior N(0, sigma_max^2) in VE coordinates), so (z, x1) is a deterministic coupling of noise and data. cond holds
    per-pair model kwargs (class_labels (B,)), bound to the teacher batch by batch. The batch stays small because
    an image U-Net's activations for larger ones outgrow glibc's mmap threshold, and are then mapped, page-faulted
    and unmapped afresh on every call (system time, docs/fewstep.md). With max_cpu_seconds, batches stop once this
    process has spent that much CPU time here (at least one is drawn): x1 is then the map of a prefix of z."""
    s_max = describe(teacher).sigma_max
    start, out = time.process_time(), []
    for i in range(0, len(z), batch_size):
        if out and max_cpu_seconds is not None and time.process_time() - start >= max_cpu_seconds:
            break
        out.append(sample(Conditioned(teacher, **{k: v[i:i + batch_size] for k, v in cond.items()}),
                          s_max * z[i:i + batch_size], method=method, nfe=nfe))
    return torch.cat(out)


@torch.no_grad()
def draw_reflow_pairs(teacher: Any, n: int, shape: tuple[int, ...], *, nfe: int, generator: torch.Generator,
                      class_probs: Tensor | None = None, method: str = "heun") -> tuple[Tensor, Tensor, Tensor | None]:
    """n pairs (z, x1, y) of the teacher: z ~ N(0, I) of the given per-sample shape, y ~ class_probs (C,) for a
    class-conditional teacher (None: unconditional, y None), x1 its ODE map of z at label y (`reflow_pairs` by the
    sampler `method`; `distill` draws with "unipc"), so a conditional student learns each class's coupling (Liu et al.
    2023, sec. 2.3, per condition)."""
    z = torch.randn((n, *shape), generator=generator)
    if class_probs is None:
        return z, reflow_pairs(teacher, z, method=method, nfe=nfe).float(), None
    p = torch.as_tensor(class_probs, dtype=torch.float64)
    if p.ndim != 1 or len(p) == 0 or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0:
        raise ValueError(f"class_probs must be a 1-D tensor of non-negative weights with a positive sum, got {p}")
    y = torch.multinomial(p, n, replacement=True, generator=generator)
    return z, reflow_pairs(teacher, z, method=method, nfe=nfe, class_labels=y).float(), y


@torch.no_grad()
def straightness(denoiser: Any, z: Tensor, *, steps: int = 200, t_max: float = 1 - 1e-3, **cond: Any) -> float:
    """S = int_0^1 E ||(y_1 - y_0) - dy/dt||^2 dt over the denoiser's ODE path in flow time (Liu et al. 2023, eq. 7),
    from y_1 = z at t_max to t = 1e-4; 0 for a straight path. With y = (1 - t) x and sigma = t / (1 - t),
    dy/dt = (y - D(x, sigma)) / t; integrated by Heun on a uniform t grid, the norm summed over coordinates and
    averaged over samples."""
    t = torch.linspace(t_max, 1e-4, steps + 1, dtype=torch.float64).tolist()

    def velocity(y: Tensor, tt: float) -> Tensor:
        sigma = torch.full((y.shape[0],), tt / (1 - tt), dtype=torch.float64)
        return (y - denoiser(y / (1 - tt), sigma, **cond)) / tt

    y, vs = z.clone(), []
    for a, b in zip(t[:-1], t[1:]):
        v = velocity(y, a)
        y_euler = y + (b - a) * v
        v_next = velocity(y_euler, b)
        vs.append((v + v_next) / 2)  # the mean velocity over the step
        y = y + (b - a) * vs[-1]
    chord = (z - y) / (t[0] - t[-1])  # (y_1 - y_0): the mean velocity over the integrated interval
    return float(torch.stack([(chord - v).pow(2).flatten(1).sum(1).mean() for v in vs]).mean())


def grid_times(student: ModelDenoiser, steps: tuple[int, ...]) -> Tensor:
    """The student's times (process time, as its backbone sees them) at every nonzero level of the few-step grids of
    each step count in steps, once per grid that holds it (so sigma_max, in all, weighs most) -> (sum(steps),)."""
    return grid_paths(student, steps)[0]


def grid_paths(student: ModelDenoiser, steps: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """The levels of `grid_times` as (their times (L,), position k of each in its grid (L,), paths (L, max(steps))):
    row l holds its grid's sigmas from sigma_max to level l (padded with that level), the road the N-step sampler
    takes to reach it."""
    s_max = describe(student).sigma_max
    grids = [fewstep(n, 0.0, s_max)[:-1].double() for n in steps]
    sig = torch.cat(grids)
    pos = torch.cat([torch.arange(len(g)) for g in grids])
    width = max(steps)
    paths = torch.stack([torch.cat([g[:k + 1], g[k].repeat(width - k - 1)]) for g in grids for k in range(len(g))])
    return student.net_time(student.process.t_of_sigma_ve(sig)), pos, paths


class ReflowDistiller:
    """Trains a student on fixed teacher pairs (z, x1) by the denoising loss of the pair's straight path: a linear
    flow (process Flow, prediction velocity) gets the conditional flow-matching loss of x_t = (1 - t) x1 + t z; any
    other process the same line in VE coordinates, x1 + sigma z, with D -> x1 (so `distill` can start the student
    from a teacher that is not a flow, as Liu et al. 2023 start 2-rectified flow from 1-rectified flow). Sampled by
    DDIM on the few-step grid, which is Euler's method in flow time for every parameterisation.

    labels (N,), the class of each pair, make the student class-conditional: each pair's label is replaced by the
    null label (`null_label`, the backbone's num_classes) with probability cond_drop, so the student also learns the
    unconditional coupling and classifier-free guidance still works (Ho & Salimans 2022). Any other conditioning
    (captions, a low-resolution input, a control image) comes from `condition(i, generator)`: the model kwargs of
    pairs i (B,), dropped to null as the teacher's training dropped them (`distill.teacher.TeacherData.redrop`).

    grid_share of each batch is trained at the levels the few-step sampler asks the student at (`grid_times`), the
    rest at t_sampling's times: the student of N-step Euler is only ever called there (Liu et al. 2023, sec. 2.3
    train on all t; Lee et al. 2024, sec. 4.1 move the weight to where few-step sampling reads the model).

    rollout of those grid-level samples (below the first level) see the state the student's own few-step sampler
    reaches there from sigma_max z, not the pair's straight line, with the same target x1: trained on the states it
    will meet (as DAgger trains a policy on its own states, Ross et al. 2011), the next call corrects the error of
    the calls before it, where the straight line assumes they made none. Its calls run without gradients.

    distance "pseudo_huber" replaces the squared error of the backbone's output by sqrt(||.||^2 + c^2) - c with
    iCT's c = 0.00054 sqrt(d) (Song & Dhariwal 2023; Lee et al. 2024 for 2-rectified flow).

    conic > 0 replaces each drawn pair's noise z by slerp(z, eps, conic), eps fresh N(0, I) noise, with the same x1:
    conic reflow's perturbation of a pair's noise within a cone around it (Kim et al. 2025, "Balanced Conic
    Rectified Flow", who apply it to the inverted noises of real images; here to the teacher's pairs), so that a few
    pairs supervise a neighbourhood of noises rather than a set of points to memorise. Two independent N(0, I) rows
    are nearly orthogonal, so the turned noise is N(0, I) too, in high dimension."""

    sampler = "ddim_fewstep"

    def __init__(self, pairs: tuple[Tensor, Tensor], student: ModelDenoiser, *, steps: int = 1,
                 t_sampling: str = "uniform", ema_decay: float = 0.999, labels: Tensor | None = None,
                 null_label: int | None = None, cond_drop: float = 0.0,
                 condition: Callable[[Tensor, torch.Generator], dict[str, Tensor]] | None = None,
                 grid_share: float = 0.0, grid_steps: tuple[int, ...] = (1, 2, 4), rollout: float = 0.0,
                 distance: str = "l2", conic: float = 0.0):
        self.z, self.x1 = pairs
        if self.z.shape != self.x1.shape:
            raise ValueError(f"reflow pairs must have one shape, got {tuple(self.z.shape)}, {tuple(self.x1.shape)}")
        if labels is not None and (labels.shape != (len(self.z),) or null_label is None):
            raise ValueError(f"reflow labels need one per pair ({len(self.z)}) and a null label, got shape "
                             f"{tuple(labels.shape)} and null label {null_label}")
        if labels is not None and condition is not None:
            raise ValueError("give a reflow student its pairs' labels or a condition function, not both")
        if not 0 <= cond_drop < 1:
            raise ValueError(f"cond_drop must be in [0, 1), got {cond_drop}")
        self.labels, self.null_label, self.cond_drop, self.condition = labels, null_label, cond_drop, condition
        if not 0 <= grid_share <= 1:
            raise ValueError(f"grid_share must be in [0, 1], got {grid_share}")
        if not 0 <= rollout <= 1:
            raise ValueError(f"rollout must be in [0, 1], got {rollout}")
        if not 0 <= conic < 1:
            raise ValueError(f"conic must be in [0, 1), got {conic}")
        if distance not in DISTANCES or not grid_steps or min(grid_steps) < 1:
            raise ValueError(f"distance must be l2 or pseudo_huber and grid_steps positive step counts, got "
                             f"{distance!r}, {grid_steps}")
        self.distance, self.conic = distance, conic
        self.student, self.steps, self.t_sampling = student, steps, t_sampling
        times, self.grid_pos, self.grid_path = grid_paths(student, grid_steps)
        self.grid_share, self.grid_t, self.rollout = grid_share, times if grid_share else None, rollout
        self.ema, self.ema_decay = make_ema(student), ema_decay

    def loss(self, x0: Tensor, generator: torch.Generator, **cond: Any) -> Tensor:
        """The pairs replace the data: B pairs drawn at random (x0 only gives the batch size), with their labels."""
        B = x0.shape[0]
        i = torch.randint(0, len(self.z), (B,), generator=generator)
        t = sample_t(self.student.process, B, generator=generator, method=self.t_sampling)
        level = None
        if self.grid_t is not None:  # a share of the batch at the sampler's own levels
            on_grid = torch.rand(B, generator=generator) < self.grid_share
            level = torch.randint(0, len(self.grid_t), (B,), generator=generator)
            t = torch.where(on_grid, self.grid_t[level], t)
        t = t.to(x0.device)
        pair_cond = {}
        if self.labels is not None:
            drop = torch.rand(B, generator=generator) < self.cond_drop
            y = torch.where(drop, torch.full_like(self.labels[i], int(self.null_label)), self.labels[i])
            pair_cond["class_labels"] = y.to(x0.device)
        elif self.condition is not None:
            pair_cond = {k: v.to(x0.device) for k, v in self.condition(i, generator).items()}
        z, x1 = self.z[i].to(x0.device), self.x1[i].to(x0.device)
        if self.conic:  # each pair's noise turned towards fresh noise: a cone of noises around z, all mapped to x1
            z = slerp(z, randn(tuple(z.shape), generator, dtype=z.dtype, device=z.device), self.conic)
        if self.rollout and level is not None:
            roll = on_grid & (self.grid_pos[level] > 0) & (torch.rand(B, generator=generator) < self.rollout)
            if bool(roll.any()):  # the eps that puts x1 at the rolled-out state: x_t = alpha (x1 + sigma_ve eps)
                r = roll.to(x0.device)
                x = self._rollout(z[r], level[roll], **{k: v[r] for k, v in pair_cond.items()})
                sigma = self.student.process.sigma_ve(t[r]).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
                z = z.clone()
                z[r] = (x - x1[r]) / sigma
        err = diffusion_loss(self.student, x1, t=t, eps=z, **pair_cond)  # (B,) mean squared error of raw
        if self.distance == "pseudo_huber":  # of the raw output's distance (Lee et al. 2024, sec. 4.2)
            d = x1[0].numel()
            return pseudo_huber_of(err * d, d)
        return err

    @torch.no_grad()
    def _rollout(self, z: Tensor, level: Tensor, **cond: Any) -> Tensor:
        """The VE state (n, ...) at each grid level (n,) that DDIM on its grid (Euler in flow time) reaches from
        sigma_max z by the student's own calls at the levels before it."""
        path, pos = self.grid_path[level].to(z.device), self.grid_pos[level]
        x = path[:, 0].to(z.dtype).view(-1, *[1] * (z.ndim - 1)) * z
        with evaluating(self.student):  # the sampler's own calls: without the student's dropout
            for k in range(int(pos.max())):
                a = (pos > k).to(z.device)  # the samples whose level lies beyond grid position k
                s, s_next = path[a, k], path[a, k + 1]
                d = self.student(x[a], s, **{key: v[a] for key, v in cond.items()}).to(x.dtype)
                x[a] = d + (s_next / s).to(x.dtype).view(-1, *[1] * (x.ndim - 1)) * (x[a] - d)
        return x

    def after_step(self, step: int, total: int) -> None:
        update_ema(self.ema, self.student, ema_decay_at(step, self.ema_decay))

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, {}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        pass  # the pairs are fixed and kept beside the run; the EMA is the checkpoint's "ema."
