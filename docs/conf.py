# Sphinx configuration of stdpipe_ccd, on sphinx-astropy's v2 settings.
import datetime
from importlib import metadata

from sphinx_astropy.conf.v2 import *  # noqa: F403

project = "stdpipe_ccd"
author = "stdpipe_ccd developers"
copyright = f"{datetime.date.today().year}, {author}"
release = metadata.version(project)
version = release.split("+")[0]

# The build must work offline: inventories come from files shipped in docs/
# (none yet), never from the network.
intersphinx_mapping = {}

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_title = f"{project} {version}"
html_theme_options = {"navigation_with_keys": False}
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False
plot_include_source = True
plot_html_show_formats = False
plot_formats = [("png", 100)]
