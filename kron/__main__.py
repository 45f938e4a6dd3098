import sys

from kron.cli.main import main

sys.exit(main())
