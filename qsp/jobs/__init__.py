"""Calibration as batch jobs: TOML job specs, MAP and NUTS phases with checkpoint/resume, ArviZ outputs, Dask.

- :mod:`qsp.jobs.spec` — the job spec (``calibration/jobs/*.toml``), validated before anything runs;
- :mod:`qsp.jobs.store` — the output folder: lock, checkpoints keyed by spec and data hashes, atomic files;
- :mod:`qsp.jobs.map_phase` — resumable multi-start L-BFGS and Laplace Hessian;
- :mod:`qsp.jobs.nuts_phase` — resumable NUTS chains (NumPyro's kernel stepped by hand);
- :mod:`qsp.jobs.results` — InferenceData, targets table, diagnostic figures;
- :mod:`qsp.jobs.runner` — the phases in order (``qsp calibrate`` is a thin CLI over :func:`run_job`).

Uses :mod:`qsp.calibrate` (the likelihood and the MAP objective); nothing below imports it.
"""
