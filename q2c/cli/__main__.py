"""`python -m starter ...` is the q2c CLI (same as the installed `q2c` script)."""

from q2c.cli.main import main

if __name__ == "__main__":
    main()
