"""``python -m genaiproxy.mock``: run the mock upstream (L{genaiproxy.mock.cli})."""

from genaiproxy.mock.cli import main

main()
