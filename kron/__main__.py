import sys

from kron.cli import main

sys.exit(main())
