"""A captions build with a slow captioner, for the kill-and-resume test:
``captions_build.py VIDEO DB SECONDS_PER_CAPTION``. With seconds above zero it first stores the
cut video's known shots. Prints ``caption SPAN`` when a clip is asked for, ``chunk END`` when a
chunk is committed, and ``report STATUS ENTRIES INFO`` at the end."""

import json
import sys
import time

from known_shots import known_shots

from mcr.media.video import Video
from mcr.memory import Memory, VideoIndex
from mcr.memory.index import make_stage
from mcr.models import ModelOutput


class Slow:
    name = "slow-captioner"

    def generate(self, messages, tools=None, **options):
        head = messages[-1].parts[0].text
        print("caption", head.split(",")[1].split()[0], flush=True)
        time.sleep(float(sys.argv[3]))
        return ModelOutput(json.dumps({"caption": "A clip: " + head, "entities": ["clip"]}))


def progress(stage, done, total):
    print(f"chunk {done:.1f}", flush=True)


memory = Memory(sys.argv[2])
if float(sys.argv[3]):
    known_shots(sys.argv[1], memory)
stage = make_stage("captions", model=Slow(), memory=memory, frames=1, clip_s=2.0, chunk_s=4.0)
for r in VideoIndex(Video(sys.argv[1]), memory).build([stage], progress=progress):
    print("report", r.status, r.entries, json.dumps(r.info), flush=True)
