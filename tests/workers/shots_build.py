"""A shots index build with a pause after each chunk, for the kill-and-resume test:
``shots_build.py VIDEO DB SECONDS_PER_CHUNK``. Prints ``chunk END`` as each chunk is committed
and ``report STATUS ENTRIES`` at the end."""

import sys
import time

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex
from mcr.tools.shots import ShotStage


class SlowShots(ShotStage):
    def run_chunk(self, video, span):
        result = super().run_chunk(video, span)
        time.sleep(float(sys.argv[3]))
        return result


def progress(stage, done, total):
    print(f"chunk {done:.1f}", flush=True)


index = VideoIndex(Video(sys.argv[1]), Memory(sys.argv[2]))
for r in index.build([SlowShots(chunk_s=2)], progress=progress):
    print("report", r.status, r.entries, flush=True)
