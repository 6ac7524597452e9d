"""Sphinx configuration of the arraymel site (``make docs``).

The build must work from a fresh clone with no network: no intersphinx inventories, no remote
images or fonts, every picture drawn here by matplotlib's plot directive.
"""

from __future__ import annotations

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE / "plots"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "numpy")

import arraymel  # noqa: E402

project = "arraymel"
author = "the arraymel developers"
copyright = "the arraymel developers"  # no year: dates live in the changelog only
version = release = arraymel.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "sphinx_copybutton",
    "sphinx_design",
    "arraymel_api",  # docs/_ext: the reference pages, generated from each module's __all__
    "arraymel_cli",  # docs/_ext: the command line's reference, from its argparse parser
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints", "plots/README.md"]
templates_path = ["_templates"]

# -W -n: every reference must resolve. Types in docstrings are plain text (numpydoc does not link
# them), and signatures carry no annotations, so nothing points at NumPy's or torch's own docs.
nitpicky = True
# Private modules and the corpus engine's internal modules (named in arraymel.corpus's docstring)
# have no reference page: a reference to one is shown as its name.
nitpick_ignore_regex = [("py:mod", r"arraymel\._\w+(\.\w+)*"), ("py:mod", r"arraymel\.corpus\.\w+")]
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autosummary_generate = True
autosummary_imported_members = True
numpydoc_show_class_members = False  # the class template lists the class's own methods
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# The modules whose public names (``__all__``) get a reference page each.
arraymel_api_modules = ["arraymel", "arraymel.presets", "arraymel.torch", "arraymel.corpus", "arraymel.plot"]

# MyST: the Markdown pages of docs/ link to each other's headings ([x](corpus.md#configuration)).
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 4

# matplotlib's plot directive: every picture is drawn at build time from code in docs/plots/.
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.autolayout": False, "savefig.bbox": "tight", "font.size": 10}
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"
plot_basedir = str(HERE)  # {plot} plots/x.py from any page
# The pictures' code runs in a scratch folder holding speech.wav, the clip of Getting started
# (synthesised by docs/plots/sitedata.py: nothing is downloaded, and nothing is committed).
PLOT_WORK = HERE / "_build" / "plot-work"
PLOT_WORK.mkdir(parents=True, exist_ok=True)
plot_working_directory = str(PLOT_WORK)

import sitedata  # noqa: E402  (docs/plots)

sitedata.write_wav(PLOT_WORK / "speech.wav", sitedata.speech_like())

html_theme = "pydata_sphinx_theme"
html_title = "arraymel"
html_static_path = ["_static"]
html_css_files = ["arraymel.css"]
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "icon_links": [],
    "show_version_warning_banner": False,
}
# pages without sub-pages need no navigation column: their text gets the room
html_sidebars = {"index": [], "getting-started": [], "changelog": [], "reference/cli": []}
html_favicon = "_static/arraymel-logo.svg"
html_logo = "_static/arraymel-logo.svg"
html_theme_options["logo"] = {"text": "arraymel", "alt_text": "arraymel: home"}
# a fresh browser profile has no stored theme mode; the theme logs an error unless a default is set
html_context = {"default_mode": "light"}


def _note_plot_dependencies(app, docname, source):
    """A page with a picture is rebuilt when the picture's code or data changes (the plot directive
    itself only watches the page)."""
    import re

    scripts = re.findall(r"\.\. plot:: (plots/\w+\.py)", source[0])
    for script in scripts:
        app.env.note_dependency(str(HERE / script))
    if scripts:
        app.env.note_dependency(str(HERE / "plots" / "sitedata.py"))
        for data in (HERE / "data").glob("*.json"):
            app.env.note_dependency(str(data))


def setup(app):
    app.connect("source-read", _note_plot_dependencies)
    # docs/architecture.md's diagram is a ```mermaid block: a forge draws it; here it is shown as its text
    # (no mermaid.js: the site loads nothing from a CDN), and Pygments has no lexer by that name
    from pygments.lexers.special import TextLexer
    from sphinx.highlighting import lexers

    lexers["mermaid"] = TextLexer()
