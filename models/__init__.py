"""Built-in model cards (one TOML per drug), installed as the package data ``qsp._models``."""
