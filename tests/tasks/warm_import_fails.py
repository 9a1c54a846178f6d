"""A task that runs as a script but cannot be imported as a module: warm starts fall back."""

import sys

if __name__ != "__main__":
    raise RuntimeError("this task refuses to be imported")


def main() -> int:
    print("ran as a script")
    return 0


if __name__ == "__main__":
    sys.exit(main())
