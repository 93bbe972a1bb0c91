"""Where the lab's own files live: package data, read through :mod:`importlib.resources`.

The price table, the field report's reference figures, the review sample with its
answer key (all in ``lab/data/``) and the HTML report templates (``lab/templates/``)
ship inside the package, so an installed wheel has them wherever it is used.
Recorded runs are not package data: they belong to the folder you work in
(see :mod:`lab.store`).
"""

import re
from importlib import resources
from pathlib import Path

# An installed wheel or a checkout is a folder on disk: its resources are real paths,
# which pandas, csv and nbconvert's template loader need.
PACKAGE_DIR = Path(str(resources.files("lab")))
DATA_DIR = PACKAGE_DIR / "data"
REFERENCE_DIR = DATA_DIR / "reference"
REVIEW_DIR = DATA_DIR / "review"
TEMPLATES_DIR = PACKAGE_DIR / "templates"

ROOT = PACKAGE_DIR.parent
"""The folder that holds the package: the repository in a checkout (``examples/``,
``notebooks/``), ``site-packages`` in an installed wheel. Never a place for data."""

RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
"""A run's id: it names one folder of the runs folder, safely."""


def valid_run_id(run_id: str) -> bool:
    """True for a run id that names one folder safely: 1 to 100 letters, digits, '.', '_' or '-'."""
    return isinstance(run_id, str) and re.fullmatch(RUN_ID_PATTERN, run_id) is not None
