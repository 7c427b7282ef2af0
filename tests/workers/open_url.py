"""Open a video by URL through the download cache (MCR_CACHE): ``open_url.py URL``; prints the
local path it was read from."""

import sys

from mcr.media.sources import open_video

print(open_video(sys.argv[1], progress=False).path)
