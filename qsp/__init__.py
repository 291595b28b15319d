"""qsp: mechanistic, differentiable PK/PD models for model-informed dosing of CD3 T-cell engagers.

Importing the package switches JAX to float64 (``jax_enable_x64``): the engine computes in double
precision by default.
"""

import jax

jax.config.update("jax_enable_x64", True)

from .errors import InputError  # noqa: E402
from .events import EventArrays, regimen_to_events, stack_events  # noqa: E402
from .model import Component, DoseRoute, Model, Output, Param, State  # noqa: E402
from .pkmodels import pk_model  # noqa: E402
from .regimen import Dose, Regimen  # noqa: E402
from .simulate import SimulationResult, SolverConfig, simulate, solve_events  # noqa: E402
from .units import Covariates, convert_dose  # noqa: E402

__version__ = "0.1.0"
__all__ = ["InputError", "EventArrays", "regimen_to_events", "stack_events", "Component", "DoseRoute", "Model",
           "Output", "Param", "State", "pk_model", "Dose", "Regimen", "SimulationResult", "SolverConfig",
           "simulate", "solve_events", "Covariates", "convert_dose"]
