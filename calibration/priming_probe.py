"""Can monocyte priming shape the MajesTEC-1 IL-6 series at a fit's MAP? A grid over the priming parameters.

Takes teclistamab's values from a fit (class + deviation and drug-level values, ``params.json``), lays the
priming parameters of the card option ``monocyte_priming`` (:mod:`qsp.components.cytokines`) over them on a grid,
and prints for each point the MajesTEC-1 log-likelihood on the fit's own virtual patients (48, seed 1, Latin
hypercube unless the fit says otherwise), the IL-6 series' own log-likelihood, the CRS-weighted mean IL-6 peak per
dose interval (the README's rule: within 1.5-fold and 1 day) and the per-dose CRS. Priming does not touch the
T-cell drive, so the per-dose CRS stays the fit's at every point.

``--mono-max`` and ``--t-gain`` scale the fit's ``IL6_MONO_MAX`` and ``IL6_T_GAIN`` (the monocytes' and the T
cells' own share of the IL-6 excess), so that priming, which scales only the monocytes' share, can be given room.

    python calibration/variant_cards.py <cards> --stages-sc 6 --tonic --sbcma-iiv --priming
    QSP_MODELS_DIR=<cards> python calibration/priming_probe.py --fit <fit> --gain 0.01,3,10,30 --kprime 0.1,1
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

STUDY = "MajesTEC-1"
PRIMING = ("KPRIME", "KPRIME_OFF", "PRIME_GAIN")


def _floats(ap, name: str, text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(not np.isfinite(v) or v <= 0 for v in vals):
        ap.error(f"--{name}: {text!r} must be comma-separated positive numbers")
    return vals


def unconstrained(transform: str, value: float) -> float:
    """The value on the prior's unconstrained scale (log, logit or identity)."""
    if transform == "log":
        return float(np.log(value))
    if transform == "logit":
        return float(np.log(value / (1.0 - value)))
    return float(value)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", required=True, help="a fit folder whose params.json has teclistamab")
    ap.add_argument("--gain", default="0.01,3,10,30", help="PRIME_GAIN values (comma-separated, > 0)")
    ap.add_argument("--kprime", default="0.1,1", help="KPRIME values, 1/day per pg/mL")
    ap.add_argument("--koff", type=float, default=float(np.log(2) / 7), help="KPRIME_OFF, 1/day (default ln2/7)")
    ap.add_argument("--mono-max", default="1", help="factors on the fit's IL6_MONO_MAX")
    ap.add_argument("--t-gain", type=float, default=1.0, help="factor on the fit's IL6_T_GAIN (default 1)")
    a = ap.parse_args(argv)
    gains, kps, mms = _floats(ap, "gain", a.gain), _floats(ap, "kprime", a.kprime), _floats(ap, "mono-max", a.mono_max)
    if not (np.isfinite(a.koff) and a.koff > 0 and np.isfinite(a.t_gain) and a.t_gain > 0):
        ap.error("--koff and --t-gain must be positive numbers")
    meta_file = Path(a.fit) / "params.json"
    if not meta_file.is_file():
        ap.error(f"--fit: {meta_file} not found")
    meta = json.loads(meta_file.read_text())
    vals = meta.get("values", {}).get("teclistamab")
    if vals is None:
        ap.error(f"--fit: {a.fit} has no teclistamab values")

    import jax
    import jax.numpy as jnp

    from qsp.calibrate.likelihood import build_problem, simulate_study, study_log_likelihood
    from qsp.calibrate.space import ParameterSpace
    from qsp.calibrate.targets import load_targets
    from qsp.cards import load_card
    from qsp.simulate import STATUS_OK
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from il6_mean_sampling import peak_windows, peaks_within

    model = load_card("teclistamab").model()
    missing = [k for k in PRIMING if k not in model.param_info]
    if missing:
        raise SystemExit("error: teclistamab's card has no [structure] monocyte_priming (run with QSP_MODELS_DIR= "
                         "cards from calibration/variant_cards.py --priming)")
    cls = [k for k in meta["class_params"] if k in vals and k not in PRIMING] + list(PRIMING)
    space = ParameterSpace({"teclistamab": model}, class_params=tuple(cls), drug_params=tuple(meta["drug_params"]),
                           deviations={})
    theta = space.init()
    for k in cls:
        if k in vals:
            theta["class"][k] = jnp.asarray(unconstrained(space.class_prior(k)[0].transform, vals[k]))
    for k in meta["drug_params"]:
        theta["drug"]["teclistamab"][k] = jnp.asarray(float(np.log(vals[k])))
    targets = load_targets(meta.get("targets"))
    problem = build_problem(space, targets, patients=meta["patients"], seed=meta["seed"], studies=[STUDY],
                            stratified=meta.get("stratified", True))
    sim = problem.studies[0]
    group = next(g for g in sim.tc_groups if g["quantity"] == "il6_pg_per_ml")
    t_idx, obs = np.asarray(group["t_idx"]), np.asarray(group["obs"], float)
    times, sigma = np.asarray(group["times"], float), np.asarray(group["sigma"], float)
    windows = peak_windows(times, np.asarray(sim.dose_t))
    loglik = jax.jit(lambda th: study_log_likelihood(th, problem, sim)[0])
    simulate = jax.jit(lambda th: simulate_study(th, problem, sim))
    print(f"{STUDY} at teclistamab's values of {a.fit} with monocyte priming ({meta['patients']} virtual patients, "
          f"seed {meta['seed']}); KPRIME_OFF {a.koff:.4g}/day, IL6_T_GAIN x {a.t_gain:g}")
    print("observed peaks per dose interval: " + " / ".join(f"{obs[m].max():.2f}" for m in windows))
    for gain, kp, mm in itertools.product(gains, kps, mms):
        c = dict(theta["class"])
        c.update(PRIME_GAIN=jnp.log(gain), KPRIME=jnp.log(kp), KPRIME_OFF=jnp.log(a.koff),
                 IL6_MONO_MAX=c["IL6_MONO_MAX"] + np.log(mm), IL6_T_GAIN=c["IL6_T_GAIN"] + np.log(a.t_gain))
        th = {**theta, "class": c}
        outs, status, crs = simulate(th)
        ok = np.asarray(status == STATUS_OK)
        p_dose = np.nan_to_num(np.asarray(crs["p_any"]))[ok]
        p_any = 1.0 - np.prod(1.0 - p_dose, axis=1)
        pred = p_any @ np.asarray(outs["il6_pg_per_ml"])[ok][:, t_idx] / p_any.sum()
        hits = peaks_within(obs, pred, times, windows)
        peaks = " / ".join(f"{pred[m].max():.2f} (day {times[m][np.argmax(pred[m])]:.2f})" for m in windows)
        series_ll = -0.5 * np.sum((np.log(obs / pred) / sigma) ** 2)
        print(f"PRIME_GAIN {gain:7.3g} KPRIME {kp:6.3g} IL6_MONO_MAX x {mm:4.2g}: log-lik {float(loglik(th)):8.2f}, "
              f"series {series_ll:7.2f}; peaks {sum(hits)}/{len(hits)}: {peaks}; CRS per dose "
              + " / ".join(f"{v:.1f}" for v in 100 * p_dose.mean(0)[:4]) + " %", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
