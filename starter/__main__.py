"""`python -m starter ...` is the q2c CLI (same as the installed `q2c` script)."""

from starter.cli import main

if __name__ == "__main__":
    main()
