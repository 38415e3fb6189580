"""Import first (before numpy): one BLAS/OpenMP thread unless ``--threads N`` is on the command line.

BLAS threads thrash on a shared, loaded machine; one is the reproducible setting. Importing this module sets the
variables (without overriding ones already set), so it must come before anything that imports numpy.
"""

import os
import sys

THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, THREADS)
