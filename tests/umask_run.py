"""Run the CLI under the umask given as the first argument (e.g. 0o022), instead of the 0077
that `b24recover`'s main() sets: file-mode tests prove each file gets its mode by itself."""

import os
import sys

os.umask(int(sys.argv[1], 8))
from b24recover.__main__ import run  # noqa: E402

sys.exit(run(sys.argv[2:]))
