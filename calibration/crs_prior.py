"""Derive the CRS layer's default (prior) parameters for teclistamab's label step-up regimen.

Runs the prior mechanistic model on a virtual population (label regimen, label premedication, 42 days
so every dose has its full window), then fits the CRS layer's parameters to the published incidences
by least squares on the percentage scale (Nelder-Mead; the exposures do not depend on the CRS
parameters, so they are simulated once):

* per dose: CRS any grade after step-up dose 1 / 2 / first treatment dose / later doses
  (42 / 36 / 25 / 2%, Tecvayli US PI 5.1; ``data/crs_by_dose.csv``) -> CRS_THETA1, CRS_BETA, CRS_TOL;
* overall grade >= 2 (21.2 + 0.6 = 21.8%) and grade >= 3 (0.6%) in MajesTEC-1 (van de Donk et al.
  Cancer 2023; ``data/crs_overall.csv``) -> CRS_DELTA2, CRS_DELTA3.

"Later doses" is compared with the mean incidence over treatment doses 2-4 (days 14, 21, 28).
These are priors for the calibration layer, not a posterior: the mechanistic parameters stay at the
card's values. Usage: ``python calibration/crs_prior.py [--patients 1000] [--seed 1]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.optimize import minimize

from qsp.cards import load_card
from qsp.crs import crs_params, probabilities
from qsp.population import population_spec, sample_population
from qsp.trial import run_trial

FIT = ("CRS_THETA1", "CRS_BETA", "CRS_TOL", "CRS_DELTA2", "CRS_DELTA3", "CRS_X50")


def targets(drug: str = "teclistamab"):
    by_dose = pd.read_csv("data/crs_by_dose.csv")
    by_dose = by_dose[by_dose.drug == drug]
    overall = pd.read_csv("data/crs_overall.csv")
    overall = overall[overall.drug == drug].iloc[0]
    per_dose = by_dose.crs_any_pct.to_numpy(float)  # doses 1, 2, 3, 4+
    g2 = float(overall.crs_g2_pct + overall.crs_g3plus_pct)
    return per_dose, g2, float(overall.crs_g3plus_pct)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    card = load_card("teclistamab")
    model, ref = card.model(), card.covariates()
    pop = sample_population(model, a.patients, a.seed, population_spec(card), weight_kg=ref.weight_kg,
                            height_cm=ref.height_cm)
    res = run_trial(model, card.regimen(until_day=35), pop, ref, days=42.0)
    ok = res.ok
    xpk = jnp.asarray(res.crs["drive_peak"][ok])  # the T-cell cytokine drive; the exposure depends on CRS_X50
    xst = jnp.asarray(res.crs["drive_predose"][ok])
    dose_t = jnp.asarray(res.doses.time.to_numpy(float))
    present = jnp.isfinite(xpk)
    eta = jnp.asarray(pop.covariates.eta_crs.to_numpy(float)[ok])
    tcr = jnp.asarray(pop.covariates.prior_tcr.to_numpy(float)[ok])
    per_dose_obs, g2_obs, g3_obs = targets()
    base = crs_params(card.crs_values())

    @jax.jit
    def predicted(v):
        c = dict(base)
        c.update({"CRS_THETA1": v[0], "CRS_BETA": jnp.exp(v[1]), "CRS_TOL": jnp.exp(v[2]),
                  "CRS_DELTA2": jnp.exp(v[3]), "CRS_DELTA3": jnp.exp(v[4]), "CRS_X50": jnp.exp(v[5])})
        x = jnp.where(present, jnp.log((c["CRS_X50"] + xpk) / (c["CRS_X50"] + xst)), jnp.nan)
        pr, _, _ = jax.vmap(lambda xi, pi, ei, ti: probabilities(xi, dose_t, pi, c, ei, ti))(x, present, eta, tcr)
        pr = jnp.nan_to_num(pr)
        mean = 100.0 * pr.mean(axis=0)  # (D, 3)
        per_dose = jnp.stack([mean[0, 0], mean[1, 0], mean[2, 0], mean[3:6, 0].mean()])
        anyg = 100.0 * (1.0 - jnp.prod(1.0 - pr, axis=1)).mean(axis=0)
        return per_dose, anyg

    def loss(v):
        per_dose, anyg = predicted(jnp.asarray(v))
        r = np.r_[np.asarray(per_dose) - per_dose_obs, float(anyg[1]) - g2_obs, 5.0 * (float(anyg[2]) - g3_obs)]
        return float(np.sum(r**2))

    starts = ([-3.0, 0.0, 0.0, 0.5, 1.2, -4.0], [-4.0, 0.5, 0.5, 0.5, 1.2, -2.0], [-2.0, -0.5, -0.5, 1.0, 1.5, -6.0])
    best = min((minimize(loss, s0, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-4, "fatol": 1e-6})
                for s0 in starts), key=lambda r: r.fun)
    v = best.x
    values = {"CRS_THETA1": v[0], "CRS_BETA": np.exp(v[1]), "CRS_TOL": np.exp(v[2]), "CRS_DELTA2": np.exp(v[3]),
              "CRS_DELTA3": np.exp(v[4]), "CRS_X50": np.exp(v[5])}
    per_dose, anyg = predicted(jnp.asarray(v))
    print(f"patients {a.patients} (seed {a.seed}), evaluable {int(ok.sum())}; loss {best.fun:.3g}")
    for k in FIT:
        print(f"  {k} = {values[k]:.3f}")
    print("per-dose any-grade CRS % (SUD1, SUD2, TD1, later): model",
          np.round(np.asarray(per_dose), 1), "label", per_dose_obs)
    print(f"overall % any / >=2 / >=3: model {np.round(np.asarray(anyg), 1)}; MajesTEC-1 72.1 / {g2_obs} / {g3_obs}")


if __name__ == "__main__":
    main()
