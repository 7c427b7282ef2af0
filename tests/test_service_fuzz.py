"""A schema-driven fuzz of the HTTP API from its own OpenAPI document (Schemathesis) against a real
``serve`` on 127.0.0.1 with an instant model: no answer is a 5xx, and every documented answer
matches its schema. Bounded: at most ``MAX_EXAMPLES`` cases an operation, each call timed out.
The draws are the same on every run (``derandomize``), so CI cannot fail on a new one; drop it
locally to search further.

Each defect it found is kept as a test of its own in ``test_service_security.py``."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from media import shared_clip  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402
from served import Served  # noqa: E402

from mcr.run.testing import RecordingModel, answer  # noqa: E402
from mcr.service.app import make_app  # noqa: E402

MAX_EXAMPLES = 40
CASES: list[int] = []  # the status of every answer, for the summary


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    (work / "media").mkdir()
    shutil.copy(shared_clip("boats.mp4"), work / "media" / "boats.mp4")
    model = RecordingModel(lambda messages, tools, **o: answer("boats", evidence=["0-2"]), name="instant")
    app = make_app(model, [work / "media"], work / "m.db", trace_dir=work / "traces", upload_limit=1 << 20)
    with Served(app) as client:
        found = schemathesis.openapi.from_url(f"{client.base_url}/openapi.json")
        # valid and invalid inputs both: a request the schema refuses must get a 4xx, never a 5xx
        found.config.generation.update(modes=list(schemathesis.GenerationMode), database="none")
        yield found
        print(f"\nfuzz: {len(CASES)} requests, answers {dict(sorted(Counter(CASES).items()))}")


schema = schemathesis.pytest.from_fixture("api")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_never_fails_and_answers_as_documented(case):
    response = case.call(timeout=30)
    CASES.append(response.status_code)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
