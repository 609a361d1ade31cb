"""The driver's main file for spark-submit (the SparkApplication's mainApplicationFile): ``heartrisk <args>``."""

import sys

from stream.cli import main

sys.exit(main())
