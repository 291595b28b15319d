"""Calibration: published targets as validated data (:mod:`qsp.calibrate.targets`)."""

from .targets import (AT_RISK, COLUMNS, GRADES, N_ORIGIN, PREMEDICATION, REGIMEN_MATCH, ROUTES, SCOPES, SELECTIONS,
                      STUDY_KINDS, SUMMARY_ERROR_MODELS, SUMMARY_QUANTITIES, SUMMARY_STATISTICS, TABLE_FILES,
                      TIMECOURSE_ERROR_MODELS, TIMECOURSE_QUANTITIES, TIMECOURSE_STATISTICS, TargetSet,
                      align_to_regimen, load_targets)

__all__ = ["TargetSet", "load_targets", "align_to_regimen", "TABLE_FILES", "COLUMNS", "ROUTES", "PREMEDICATION",
           "STUDY_KINDS", "REGIMEN_MATCH", "SCOPES", "GRADES", "AT_RISK", "N_ORIGIN", "SELECTIONS",
           "TIMECOURSE_QUANTITIES", "TIMECOURSE_STATISTICS", "TIMECOURSE_ERROR_MODELS", "SUMMARY_QUANTITIES",
           "SUMMARY_STATISTICS", "SUMMARY_ERROR_MODELS"]
