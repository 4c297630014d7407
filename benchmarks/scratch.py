"""A scratch copy of the project, as a user's fresh clone: for the pipeline benchmark and the
end-to-end test, which both run the real ``dvc repro`` without touching this repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

#: A committer identity, so ``git commit`` works on machines without a git config.
GIT_ENV = {"GIT_AUTHOR_NAME": "litequant", "GIT_AUTHOR_EMAIL": "litequant@example.com",
           "GIT_COMMITTER_NAME": "litequant", "GIT_COMMITTER_EMAIL": "litequant@example.com"}


def set_params(project: Path, **sections: dict[str, Any]) -> None:
    """Update sections of ``project/params.yaml``, e.g. ``set_params(p, fetch={"seed": 1})``."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def scratch_project(root: Path, revision: str | None = None, **sections: dict[str, Any]) -> Path:
    """Copy the repository's tracked files (or, with ``revision``, its files at that git
    revision) to ``root`` as a fresh git repository.

    ``sections`` update ``params.yaml`` (see :func:`set_params`) before the first commit.
    Returns ``root``.
    """
    if revision is not None:
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", revision], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    else:
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                 check=True).stdout.decode().split("\0")
        for name in filter(None, tracked):
            if (REPO / name).is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, root / name)
    set_params(root, **sections)
    env = {**os.environ, **GIT_ENV}
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "scratch copy of litequant"]):
        subprocess.run(command, cwd=root, check=True, env=env, capture_output=True)
    return root
