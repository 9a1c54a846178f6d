"""A second task of the warm-start tests' "package": it runs on warm_probe's imports, as the
tasks of one package share numpy, zarr... (`import warm_probe` records nothing in a starter
that has already imported it)."""

import sys

import warm_probe

if __name__ == "__main__":
    sys.exit(warm_probe.main())
