"""Encode texts with the default sentence encoder: ``sentence_encode.py TEXTS_JSON``. Prints one
JSON line: the encoder's kind and name, which heavy libraries were imported, and the vectors."""

import json
import sys

from mcr.memory.encoder import default_encoder

enc = default_encoder()
vecs = enc.encode(json.loads(sys.argv[1]))
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
print(json.dumps({"kind": type(enc).__name__, "name": enc.name, "heavy": heavy, "vecs": vecs.tolist()}))
