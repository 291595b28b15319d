"""The virtual step-up optimizer (issue 11): regimen space, objectives over virtual trials, search.

Uses the trial and calibration layers; used only by the CLI and notebooks (never imported by the layers below).

* :mod:`qsp.optimize.space` -- candidates (structure + step doses + intervals) as plain regimens.
"""
