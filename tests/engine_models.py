"""Shared model objects, parameters and solver settings for the engine verification tests.

``qsp.simulate.compiled`` caches one jitted function per (model object, solver config, batched), so
the test modules share these objects instead of building their own: every new pair costs a compile.
"""

from __future__ import annotations

from qsp import pk_model

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

# Closed-form parameter spellings (V1 for both models).
CF1 = dict(CL=P1["CL"], V1=P1["V"], KA=P1["KA"], F=P1["F"], ALAG=P1["ALAG"])
CF2 = dict(P2)
