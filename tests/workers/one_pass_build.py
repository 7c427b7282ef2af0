"""A one-pass index build (shots, on-screen text, embeddings) that can be held and killed:
``one_pass_build.py VIDEO DB CLIP_DIR HOLD_AFTER``. Prints ``chunk STAGE DONE`` as each stage
commits a chunk and ``report STAGE STATUS`` at the end; with HOLD_AFTER above zero, it stops
after that many commits (between two commits of one chunk) and waits to be killed."""

import sys
import threading

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex
from mcr.tools.clip import EmbeddingStage
from mcr.tools.ocr import OcrStage
from mcr.tools.shots import ShotStage

CHUNK_S = 15.0


def stages(clip_dir) -> list:
    return [ShotStage(chunk_s=CHUNK_S), OcrStage(chunk_s=CHUNK_S), EmbeddingStage(model=str(clip_dir), chunk_s=CHUNK_S)]


def main() -> None:
    seen = []

    def progress(stage, done, total):
        seen.append(stage)
        print("chunk", stage, done, flush=True)
        if len(seen) == int(sys.argv[4]):
            threading.Event().wait()  # held here until killed

    index = VideoIndex(Video(sys.argv[1]), Memory(sys.argv[2]))
    for r in index.build(stages(sys.argv[3]), progress=progress):
        print("report", r.stage, r.status, flush=True)


if __name__ == "__main__":
    main()
