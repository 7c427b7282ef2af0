"""Embed the frames of a video's first six seconds with a CLIP folder: ``clip_embed.py VIDEO CLIP_DIR``.
Prints one JSON line: the rows, whether torch was imported, and the kind of image encoder used."""

import json
import sys

from mcr.media.video import Video
from mcr.tools.clip import EmbeddingStage
from mcr.types import TimeSpan

stage = EmbeddingStage(model=sys.argv[2], fps=1.0, share=False)
rows = stage.run_chunk(Video(sys.argv[1]), TimeSpan(0, 6)).arrays[0.0]
print(json.dumps({"rows": rows.tolist(), "torch": "torch" in sys.modules, "kind": type(stage.images()).__name__}))
