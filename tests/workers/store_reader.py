"""Read a memory database while another process writes it: ``store_reader.py DB``. Counts the
entries until it sees all 2000 (a count that is not a whole number of 50-entry batches means a
reader saw half a write: exit 1), then prints ``ok POLLS LOWEST HIGHEST ALWAYS_GREW``."""

import sys

from mcr.memory import MemoryStore

store = MemoryStore(sys.argv[1], readonly=True)
counts = []
while True:
    n = store.count()
    counts.append(n)
    if n % 50:
        print("partial", n)
        sys.exit(1)
    store.query(kind="fact", limit=20)
    if n >= 2000:
        break
print("ok", len(counts), min(counts), max(counts), counts == sorted(counts))
