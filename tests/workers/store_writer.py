"""Write 2000 entries to a memory database in 40 batches of 50: ``store_writer.py DB``."""

import sys

from mcr.memory import MemoryEntry, MemoryStore

store = MemoryStore(sys.argv[1])
for batch in range(40):
    store.add_many([MemoryEntry(f"fact {batch}-{i}", "fact", video_id="v") for i in range(50)])
print("wrote", store.count())
