"""The `job` action's steps: a stage job's matrix entry, or, when the plan's outputs held
only its id, its whole entry from the jobs file the planning job uploaded. Runs on the
runner's own python3 (no ci-layers installed), so it is plain and small.

    python3 entry.py artifact   # artifact=<name> to GITHUB_OUTPUT when the entry is an id
    python3 entry.py entry      # entry=<the whole entry, JSON> to GITHUB_OUTPUT
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path


def fail(message: str) -> int:
    print(f"::error::ci-layers job: {message}")
    return 1


def output(name: str, value: str) -> None:
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def main(step: str) -> int:
    try:
        job = json.loads(os.environ.get("JOB") or "null")
    except ValueError:
        return fail("the job input is not JSON: give it ${{ toJSON(matrix) }}")
    if not isinstance(job, dict) or not isinstance(job.get("name"), str):
        return fail("the job input is no stage job's entry: give it ${{ toJSON(matrix) }}")
    compact = job.get("compact") is True
    if step == "artifact":
        output("artifact", str(job.get("artifact") or "") if compact else "")
        return 0
    entry = job
    if compact:
        found = [
            data
            for path in sorted(Path(os.environ.get("JOBS_DIR") or ".").glob("*.json"))
            if isinstance(data := json.loads(path.read_text(encoding="utf-8")), dict)
            and data.get("artifact") == job.get("artifact")
        ]
        if not found:
            return fail(f"no jobs file of artifact {job.get('artifact')!r} was downloaded")
        entry = found[0].get("jobs", {}).get(job.get("job"))
        if not isinstance(entry, dict):
            return fail(f"the jobs file has no job {job.get('job')!r}: a plan of another run?")
    output("entry", json.dumps(entry, separators=(",", ":"), ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "entry"))
