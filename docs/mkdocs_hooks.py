"""MkDocs hooks (``mkdocs.yml``: ``hooks``): pages generated at build time from what the repository already holds.

Nothing here is committed output: every build regenerates

* the README's sections as pages (the README stays the one place for set-up, results and their commands):
  ``index.md`` (introduction, set-up, Python, installing), ``usage.md`` (command line, virtual trials),
  ``calibration.md`` (calibration layer, joint MAP fit, calibration jobs, plus the per-drug fit figures and the
  shipped job results), ``optimizer.md`` (step-up optimizer results, plus its figures), ``performance.md``,
  ``model.md`` (model notes, how good the priors are, the layout); images the README links are added as files;
* ``cards.md``: one table per drug card (parameter, value, unit, description, source) from ``models/*.toml``;
* ``cli.md``: the ``--help`` of ``qsp`` and of each command, from the Typer application itself;
The notebooks reach the site through the link ``docs/site/notebooks -> ../../notebooks``; mkdocs-jupyter
renders them as stored, without outputs (``QSP_DOCS_EXECUTE=1 mkdocs build`` executes them during the build).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]

# page -> README "## " sections (by the start of their title); the first page also takes the text before them
README_PAGES = {
    "index.md": ("Set-up", "Python", "Installing"),
    "usage.md": ("Command line", "NONMEM events", "Virtual trials"),
    "calibration.md": ("Calibration layer", "Calibration jobs"),
    "optimizer.md": ("Step-up optimizer results",),
    "performance.md": ("Performance",),
    "model.md": ("Model notes", "How good are the priors", "Layout"),
}
TITLES = {"usage.md": "Using qsp", "calibration.md": "Calibration", "optimizer.md": "Step-up optimizer",
          "performance.md": "Performance", "model.md": "The model"}


def _readme_sections() -> tuple[str, list[tuple[str, str]]]:
    text = (ROOT / "README.md").read_text()
    parts = re.split(r"(?m)^## ", text)
    head, sections = parts[0], []
    for p in parts[1:]:
        title, _, body = p.partition("\n")
        sections.append((title.strip(), body))
    return head, sections


def _add(files, config, src_uri: str, content: str | None = None, abs_src_path: Path | None = None) -> None:
    if content is not None:
        files.append(File.generated(config, src_uri, content=content))
    else:
        files.append(File.generated(config, src_uri, abs_src_path=str(abs_src_path)))


def _images(md: str, files, config, added: set) -> str:
    """Link the README's repository-relative images as files of the site (``assets/<path>``)."""
    def repl(m):
        alt, path = m.group(1), m.group(2)
        src = ROOT / path
        if not src.is_file():
            raise FileNotFoundError(f"README links {path}, which does not exist")
        uri = "assets/" + path
        if uri not in added:
            _add(files, config, uri, abs_src_path=src)
            added.add(uri)
        return f"![{alt}]({uri})"
    return re.sub(r"!\[([^\]]*)\]\(((?:docs|calibration)/[^)]+)\)", repl, md)


def _gallery(title: str, paths: list[Path], files, config, added: set) -> str:
    out = [f"\n## {title}\n"]
    for p in paths:
        uri = "assets/" + p.relative_to(ROOT).as_posix()
        if uri not in added:
            _add(files, config, uri, abs_src_path=p)
            added.add(uri)
        out.append(f"![{p.relative_to(ROOT).as_posix()}]({uri})\n")
    return "\n".join(out)


def _readme_pages(files, config, added: set) -> None:
    head, sections = _readme_sections()
    used = set()
    for page, wanted in README_PAGES.items():
        chunks = []
        if page == "index.md":
            chunks.append(head)
        else:
            chunks.append(f"# {TITLES[page]}\n\n*From the repository's README.*\n")
        for want in wanted:
            hits = [(t, b) for t, b in sections if t.startswith(want)]
            if not hits:
                raise KeyError(f"README has no section starting {want!r} (docs/mkdocs_hooks.py README_PAGES)")
            for t, b in hits:
                chunks.append(f"## {t}\n{b}")
                used.add(t)
        md = _images("\n".join(chunks), files, config, added)
        if page == "calibration.md":
            figs = sorted((ROOT / "calibration/fits/map").glob("fit_*.png"))
            md += _gallery("Observed vs predicted per drug (the shipped joint MAP fit)", figs, files, config, added)
            md += _job_results(files, config, added)
        if page == "optimizer.md":
            for d in sorted(p for p in (ROOT / "docs/optimize").iterdir() if p.is_dir()):
                figs = [d / f for f in ("pareto.png", "per_dose_crs.png", "bands.png") if (d / f).is_file()]
                md += _gallery(f"{d.name}", figs, files, config, added)
        _add(files, config, page, content=md)
    missing = [t for t, _ in sections if t not in used]
    if missing:  # a new README section must be given a page (README_PAGES), not dropped
        raise KeyError(f"README sections on no page: {missing} (docs/mkdocs_hooks.py README_PAGES)")


def _job_results(files, config, added: set) -> str:
    """The shipped ``qsp calibrate`` results (``calibration/results/<job>/``): summary table and figures."""
    base = ROOT / "calibration/results"
    if not base.is_dir():
        return ""
    out = ["\n## Shipped calibration job results (`calibration/results/`)\n"]
    import pandas as pd

    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        out.append(f"\n### {d.name}\n")
        s = d / "summary.csv"
        if s.is_file():
            out.append(_table(pd.read_csv(s)) + "\n")
        figs = [d / f for f in ("trace.png", "rank.png", "pairs.png") if (d / f).is_file()]
        figs += sorted(d.glob("ppc_*.png"))
        if figs:
            out.append(_gallery(f"{d.name}: figures", figs, files, config, added).replace("\n## ", "\n#### "))
    return "\n".join(out)


def _table(df) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else _cell(v)
    rows = ["| " + " | ".join(_cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def _cell(x) -> str:
    return html.escape(str(x)).replace("|", "&#124;").replace("\n", " ")


def cards_page() -> str:
    from qsp.cards import list_cards, load_card

    out = ["# Model cards\n",
           "Every drug card (`models/<drug>.toml`): each parameter with its value, unit and source. Entries whose "
           "source starts with *assumed* are priors to calibrate, not measurements; parameters a card does not "
           "set take the class defaults of the components (see *Components*). The calibrated values that "
           "`qsp simulate` uses by default are laid over these (`data/calibrated/tce_posterior.json`; "
           "`--parameters prior` uses the cards as written).\n"]
    for name in list_cards():
        card = load_card(name)
        drug = card.drug
        out.append(f"\n## {name}\n")
        meta = ", ".join(f"{k}: {_cell(v)}" for k, v in drug.items() if k in ("brand", "target", "format", "indication"))
        out.append(f"{meta}. Structure: " + ", ".join(f"{k} = {_cell(v)}" for k, v in card.structure.items()) + ".\n")
        out.append("| parameter | value | unit | description | source |\n|---|---|---|---|---|")
        for k, spec in card.params.items():
            out.append(f"| `{k}` | {_cell(spec.get('value', ''))} | {_cell(spec.get('unit', ''))} | "
                       f"{_cell(spec.get('description', ''))} | {_cell(spec.get('source', ''))} |")
        if card.population:
            out.append("\nInter-individual variability (`[population]`, SD of log):\n")
            out.append("| parameter | omega | source |\n|---|---|---|")
            for k, spec in card.population.items():
                if isinstance(spec, dict) and "value" in spec:
                    out.append(f"| `{k}` | {_cell(spec['value'])} | {_cell(spec.get('source', ''))} |")
    return "\n".join(out) + "\n"


def _help(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    r = subprocess.run([sys.executable, "-m", "qsp", *args, "--help"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"qsp {' '.join(args)} --help failed: {r.stderr}")
    return r.stdout


def cli_page() -> str:
    from qsp.cli import app

    out = ["# CLI reference\n", "Generated from the `qsp` application (`qsp COMMAND --help`).\n",
           "## qsp\n", "```text\n" + _help([]) + "```\n"]
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    for n in names:
        out.append(f"## qsp {n}\n")
        out.append("```text\n" + _help([n]) + "```\n")
    return "\n".join(out)


def on_files(files, config):
    added: set = set()
    _readme_pages(files, config, added)
    _add(files, config, "cards.md", content=cards_page())
    _add(files, config, "cli.md", content=cli_page())
    return files
