"""The mock upstream's older entry point, kept working:
``python -m genaiproxy.mock_upstream`` runs L{genaiproxy.mock.cli.main}."""

from genaiproxy.mock.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
