"""Shared model objects, parameters and solver settings for the engine verification tests.

``qsp.simulate.compiled`` caches one jitted function per (model object, solver config, batched), so
the test modules share these objects instead of building their own: every new pair costs a compile.
"""

from __future__ import annotations

import numpy as np

from qsp import pk_model, regimen_to_events, simulate

M1 = pk_model("pk-1cmt", time_unit="h")
M2 = pk_model("pk-2cmt", time_unit="h")
M1_DAY = pk_model("pk-1cmt", time_unit="day")
M2_TV = pk_model("pk-2cmt", time_unit="h", time_varying_cl=True)

# Distinct, well-separated rate constants (1/h): k = 0.15, KA = 0.35.
P1 = dict(CL=1.2, V=8.0, KA=0.35, F=0.7, ALAG=0.75)
# alpha ~ 0.52, beta ~ 0.043, KA = 0.4 (1/h).
P2 = dict(CL=0.9, V1=6.0, Q=1.5, V2=12.0, KA=0.4, F=0.65, ALAG=0.5)
P2_TV = dict(P2, CLSS=0.45, KCL=0.05)

TIGHT = dict(rtol=1e-10, atol=1e-12)
SOLVER_NAMES = ("tsit5", "kvaerno5")
# The engines the closed-form tests run: each solver on the segmented loop, and Tsit5 on the whole-horizon loop
# (qsp.whole_horizon), spelled "solver/loop".
ENGINES = SOLVER_NAMES + ("tsit5/whole",)
LOOPS = ("segments", "whole")

# Closed-form parameter spellings (V1 for both models).
CF1 = dict(CL=P1["CL"], V1=P1["V"], KA=P1["KA"], F=P1["F"], ALAG=P1["ALAG"])
CF2 = dict(P2)

T1 = np.linspace(0.0, 72.0, 145)  # every 0.5 h; includes every dose, lag and infusion boundary the tests use


def run(model, reg, params, times=T1, solver="tsit5", times_left=None, pad=True, loop="segments"):
    """Simulate at the tight tolerances. ``solver`` may name the loop too (``"tsit5/whole"``, see :data:`ENGINES`). With ``pad`` the regimen is compiled to event arrays padded to fixed
    lengths and short output grids are padded (by repeating the last time) to 8 entries, so that the tests
    share a few compiled shapes (jit retraces per shape); the padded outputs are cut off again."""
    times = np.asarray(times, dtype=float)
    n = times.shape[0]
    if pad:
        reg = regimen_to_events(model, reg, pad_jumps=16, pad_infusions=8)
        if n < 8:
            times = np.concatenate([times, np.full(8 - n, times[-1])])
            if times_left is not None:
                times_left = np.concatenate([times_left, np.zeros(8 - n, bool)])
    if "/" in solver:
        solver, loop = solver.split("/")
    res = simulate(model, reg, times, params, solver=solver, times_left=times_left, loop=loop, **TIGHT)
    assert int(res.status) == 0
    res.outputs = {k: v[:n] for k, v in res.outputs.items()}
    res.states = {k: v[:n] for k, v in res.states.items()}
    return res
