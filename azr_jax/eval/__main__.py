import sys

from azr_jax.eval.cli import main

sys.exit(main())
