"""How much the resident memory grows while 24 frames of a long video are decoded:
``video_rss.py VIDEO``. Prints one JSON line with the frame count and the growth in bytes."""

import json
import resource
import sys

from mcr.media.video import Video


def rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


video = Video(sys.argv[1])
video.frames(max_frames=2)
before = rss()
frames = video.frames(fps=5, max_frames=24)
print(json.dumps({"n": len(frames), "growth": rss() - before}))
