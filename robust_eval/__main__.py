import sys

from robust_eval.cli import main

sys.exit(main())
