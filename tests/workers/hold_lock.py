"""Hold an exclusive lock on a SQLite database for a while, as a long write by another process
would: ``hold_lock.py DB SECONDS``. Prints ``locked`` once it holds the lock."""

import sqlite3
import sys
import time

conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
