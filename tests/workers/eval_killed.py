"""An evaluation run the test kills part way: ``eval_killed.py ANNOTATIONS VIDEOS ANSWERS_JSON OUT``.
Each answer takes a quarter of a second, so the kill lands between records."""

import json
import sys

from oracles import oracle, oracle_factory

from mcr.eval import load_benchmark, resolve_videos, run_eval

ann, videos, answers, out = sys.argv[1:5]
samples = resolve_videos(load_benchmark("jsonl", ann), videos)
run_eval(samples, oracle_factory(oracle(json.loads(answers), delay=0.25)), out)
