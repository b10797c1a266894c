"""One module per vendor; each maps to and from the canonical model in `domain/`."""
