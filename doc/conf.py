"""Sphinx configuration for psfkit (build: ``python -m sphinx -W -b html doc doc/_build/html``)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import psfkit  # noqa: E402

# the benchmark tables are generated from benchmarks/results/*.json at every build, never typed by hand
sys.path.insert(0, str(ROOT / "benchmarks"))
import report  # noqa: E402

report.write_rst(Path(__file__).parent / "generated" / "benchmark_tables.inc")

project = "psfkit"
author = "psfkit developers"
copyright = "2026, psfkit developers"  # noqa: A001
version = release = psfkit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.extlinks",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

extlinks = {"doi": ("https://doi.org/%s", "doi:%s")}
autosummary_generate = True
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# numpydoc's "See Also" of names that live only in the lazy top-level namespace
numpydoc_validation_checks = set()

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "skimage": ("https://scikit-image.org/docs/stable/", None),
}
# offline builds (CI has no network): never fail on an unreachable inventory
intersphinx_disabled_reftypes = ["*"]
if os.environ.get("PSFKIT_DOCS_OFFLINE", "1") == "1":
    intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
}

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
html_theme = "pydata_sphinx_theme"
html_title = "psfkit"
html_static_path = []
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}
nitpicky = False
suppress_warnings = ["config.cache"]
