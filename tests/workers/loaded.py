"""Which heavy libraries importing some modules pulls in: ``loaded.py MODULES WATCHED``, both
comma-separated. Prints the watched libraries found loaded, as a sorted JSON list."""

import importlib
import json
import sys

for name in sys.argv[1].split(","):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.argv[2].split(",") if m in sys.modules)))
