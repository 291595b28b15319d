"""Data in and out: NONMEM-style datasets and plain regimen tables."""

from .nonmem import NONMEM_COLUMNS, NonmemDataset, Subject, read_nonmem, to_nonmem, write_nonmem
from .regimen_csv import (LabelRegimen, label_regimens, load_label_regimen, read_regimen_csv, regimen_to_table,
                          write_regimen_csv)

__all__ = ["NONMEM_COLUMNS", "NonmemDataset", "Subject", "read_nonmem", "to_nonmem", "write_nonmem",
           "LabelRegimen", "label_regimens", "load_label_regimen", "read_regimen_csv", "regimen_to_table",
           "write_regimen_csv"]
