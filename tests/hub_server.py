"""A small model hub on 127.0.0.1 for tests: repositories from local folders under the hub's URL
layout (the API calls and ``resolve`` URLs ``huggingface_hub`` makes), and plain files by URL.

It serves what the hub's clients read: ``/api/models/ORG/NAME/revision/REV`` (the commit and
file list), ``/api/models/ORG/NAME/tree/REV`` (the files with sizes and ids), and
``/ORG/NAME/resolve/REV/PATH`` (each file, with the ``X-Repo-Commit`` and ``ETag`` headers).
Every request is counted, so a test can tell whether a second load touched the network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from local_server import LocalServer


class Hub(LocalServer):
    def __init__(self, repos: dict[str, Path] | None = None, files: dict[str, Path] | None = None) -> None:
        super().__init__()
        self.repos = dict(repos or {})
        self.files = dict(files or {})

    @staticmethod
    def commit(folder: Path) -> str:
        h = hashlib.sha1()
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(folder)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    def serve(self, handler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        parts = path.strip("/").split("/")
        if parts[0] == "files" and len(parts) == 2 and parts[1] in self.files:
            return self.send(handler, 200, self.files[parts[1]].read_bytes(), body=body)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo, rest = "/".join(parts[2:4]), parts[4:]
            folder = self.repos.get(repo)
            if folder is None:
                return self.send(handler, 404, b'{"error": "Repository not found"}', body=body)
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            names = [str(p.relative_to(folder)) for p in files]
            if not rest or rest[0] == "revision":
                info = {"id": repo, "modelId": repo, "sha": self.commit(folder), "private": False,
                        "siblings": [{"rfilename": n} for n in names]}  # fmt: skip
                return self.send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
            if rest[0] == "tree":
                tree = [{"type": "file", "path": n, "size": p.stat().st_size,
                         "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for n, p in zip(names, files)]  # fmt: skip
                return self.send(handler, 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            folder = self.repos.get(repo)
            if folder is not None and (folder / name).is_file():
                data = (folder / name).read_bytes()
                headers = {"X-Repo-Commit": self.commit(folder), "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
                return self.send(handler, 200, data, headers, body)
        return self.send(handler, 404, b'{"error": "Entry not found"}', body=body)
