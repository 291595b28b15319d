"""Patient subgroups of a card's virtual population, as trials and labels name them.

=======================  =====================================================================================
``high_tumour_burden``   the top quartile of baseline tumour/target burden (``TUMOR0``, log-normal IIV)
``low_t_cells``          the bottom quartile of baseline blood T cells (``T0``, log-normal IIV)
``prior_tcr``            every patient with prior T-cell-redirecting therapy (the CRS layer's ``CRS_PRIOR_TCR``
                         log-odds shift, :mod:`qsp.crs`; MajesTEC-1 and MagnetisMM-3 enrolled such patients)
=======================  =====================================================================================

A quartile subgroup of ``n`` patients is the quartile of the ``4 n`` patients the card's population draws with the
same seed (exact ranks, so the subgroup's cut-off is the population's quartile of that cohort); the patients keep
their covariates, random effects and CRS sensitivity. ``prior_tcr`` keeps the ``n`` patients and flags them all.
The subgroup of one seed is stable: the same ``(card, subgroup, n, seed, parameters)`` gives the same patients.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .errors import InputError
from .trial import CardTrialSetup, card_trial_setup

# name -> (covariate, which quartile, words)
SUBGROUPS = {
    "high_tumour_burden": ("TUMOR0", "top", "top quartile of baseline tumour burden"),
    "low_t_cells": ("T0", "bottom", "bottom quartile of baseline blood T cells"),
    "prior_tcr": ("prior_tcr", "all", "prior T-cell-redirecting therapy"),
}


def describe(subgroup: str) -> str:
    """The subgroup in words."""
    _check(subgroup)
    return SUBGROUPS[subgroup][2]


def _check(subgroup: str) -> None:
    if subgroup not in SUBGROUPS:
        raise InputError(f"unknown subgroup {subgroup!r}; allowed: {', '.join(SUBGROUPS)}", field="subgroup")


def subgroup_setup(card, subgroup: str, *, patients: int, seed: int, parameters=None,
                   stratified: bool = False) -> CardTrialSetup:
    """The card's virtual trial restricted to ``subgroup`` (see the module docstring), ``patients`` patients
    (``stratified``: drawn from a Latin-hypercube cohort, :func:`qsp.trial.card_trial_setup`)."""
    _check(subgroup)
    if isinstance(patients, bool) or not isinstance(patients, (int, np.integer)) or patients < 1:
        raise InputError(f"number of patients must be a positive integer, got {patients!r}", field="patients")
    col, side, _ = SUBGROUPS[subgroup]
    if side == "all":
        return card_trial_setup(card, patients=int(patients), seed=seed, parameters=parameters, prior_tcr=1.0,
                                stratified=stratified)
    setup = card_trial_setup(card, patients=4 * int(patients), seed=seed, parameters=parameters, stratified=stratified)
    cov = setup.population.covariates
    if col not in cov or float(np.std(cov[col].to_numpy(float))) == 0.0:
        raise InputError(f"{card.name}: {col} does not vary between virtual patients (no IIV in the card), so the "
                         f"subgroup {subgroup!r} is not defined", field="subgroup")
    order = np.argsort(cov[col].to_numpy(float), kind="stable")
    idx = order[-int(patients):] if side == "top" else order[: int(patients)]
    return replace(setup, population=setup.population.subset(np.sort(idx)))


__all__ = ["SUBGROUPS", "describe", "subgroup_setup"]
