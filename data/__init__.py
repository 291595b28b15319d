"""Curated published data (CSV with source columns), installed as the package data ``qsp._data``."""
