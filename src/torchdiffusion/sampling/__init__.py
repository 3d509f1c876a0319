"""Samplers as pure functions over a denoiser and a sigma grid (one module per family, each with its `Method`:
kind, order, cost), named in `torchdiffusion.registry.SAMPLERS` (here as METHODS), the grid and budget policy, and
`sample`, the one entry point (`budget`)."""

from . import grids
from .adaptive import sample_dopri5
from .ancestral import sample_edm_stochastic, sample_euler_ancestral
from .budget import GRID_FIRST_STEP, GRID_KNEE, budget_grid, default_grid, resolve_knee, resolve_tail, sample
from .calibrate import calibrate_grid
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .fewstep import sample_consistency, sample_ddim_fewstep
from .dpm_solver import sample_dpm_solver
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_2s, sample_dpmpp_3m
from .lms import sample_ipndm, sample_lms
from .ode import sample_euler, sample_heun, sample_rk4
from .method import Method, check_max_ratio, check_options
from ..registry import SAMPLERS as METHODS
from .sde import sample_ald, sample_euler_maruyama, sample_pc
from .unipc import sample_unipc

__all__ = ["GRID_FIRST_STEP", "GRID_KNEE", "METHODS", "Method", "budget_grid", "calibrate_grid", "check_max_ratio", "check_options", "default_grid", "grids",
           "resolve_knee", "resolve_tail", "sample", "sample_ald", "sample_ddim", "sample_ddpm", "sample_dopri5",
           "sample_consistency", "sample_ddim_fewstep", "sample_dpm_solver", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_2s", "sample_dpmpp_3m",
           "sample_edm_stochastic", "sample_euler", "sample_euler_ancestral", "sample_euler_maruyama", "sample_heun",
           "sample_ipndm", "sample_lms", "sample_pc", "sample_rk4", "sample_unipc"]
