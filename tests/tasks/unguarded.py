"""A task without `if __name__ == "__main__":`: importing it would run it, so it is spawned."""

import sys

print(f"ran with {len(sys.argv) - 1} arguments")
