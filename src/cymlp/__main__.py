import sys

from cymlp.cli import main

sys.exit(main())
