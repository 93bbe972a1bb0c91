"""``python -m lab.review FILE``: review a file with the provider in LLM_PROVIDER."""

import sys

from lab.review.app import main

sys.exit(main())
