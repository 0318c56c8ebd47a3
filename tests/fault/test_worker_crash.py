"""Workers SIGKILLed mid-run: no job is lost, and only a killed attempt runs twice."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest

from tests.fault import (
    SERVER_ARGS,
    Recorder,
    all_jobs,
    append_job,
    attempts,
    executions,
    submit_batch,
    wait_all_finished,
    worker_args,
)
from tests.processes import Worker, wait_until

ROUNDS = 5  # one worker killed per round
FILE_JOBS_PER_ROUND = 60  # 300 instant jobs recorded in the run log
SLOW_JOBS_PER_ROUND = 20  # 100 jobs of 0.3 s recorded by the Recorder: kills hit them in flight


def worker_id(worker: Worker) -> str:
    return worker.args[worker.args.index("--worker-id") + 1]


def workers_holding_slow_jobs(http, url: str, workers: list[Worker]) -> list[Worker]:
    """The workers (of ``workers``) that run a slow (recorder) job now."""
    running = all_jobs(http, url, "running")
    holders = {job["worker_id"] for job in running if job["type"] == "http"}
    return [worker for worker in workers if worker_id(worker) in holders]


@pytest.mark.fault
@pytest.mark.timeout(150)
def test_killed_workers_lose_no_job(db_url, start_server, start_worker, http, tmp_path):
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    file_root = tmp_path / "files"
    server = start_server(db_url, *SERVER_ARGS)
    names = iter(f"w{n}" for n in range(100))

    def new_worker():
        return start_worker([server.url], *worker_args(file_root, next(names), concurrency=4))

    def leasing(worker) -> bool:
        seen = http.get(f"{server.url}/workers", timeout=10).json()["workers"]
        return worker_id(worker) in {w["id"] for w in seen}

    with Recorder(delay=0.3) as recorder:
        workers = [new_worker() for _ in range(3)]
        # Started up (it takes seconds on a busy machine): a kill then hits a worker.
        wait_until(lambda: all(leasing(w) for w in workers), timeout=60, message="workers")
        tag_of: dict[int, str] = {}
        kills = []
        for round_ in range(ROUNDS):
            jobs = [
                append_job(f"f{round_}-{i}", max_attempts=20) for i in range(FILE_JOBS_PER_ROUND)
            ]
            jobs += [
                recorder.job(f"h{round_}-{i}", max_attempts=20) for i in range(SLOW_JOBS_PER_ROUND)
            ]
            rng.shuffle(jobs)
            for job, job_id in zip(jobs, submit_batch(http, server.url, jobs), strict=True):
                payload = job["payload"]
                tag = payload["content"].strip() if job["type"] == "file" else payload["url"]
                tag_of[job_id] = tag.rsplit("/", 1)[-1]
            # A worker running a slow job at a random moment while they run: killing
            # an idle worker no longer costs an attempt (its waiting lease request
            # gets nothing), so a kill must hit one in flight to prove something.
            time.sleep(rng.uniform(0.1, 0.5))  # the random moment: the point
            holding = wait_until(
                lambda: workers_holding_slow_jobs(http, server.url, workers),
                timeout=30,
                interval=0.02,
                message=f"a worker to run a slow job (seed {seed})",
            )
            victim = rng.choice(holding)
            victim.signal(signal.SIGKILL)
            victim.popen.wait(timeout=10)
            kills.append(worker_id(victim))
            workers.remove(victim)
            workers.append(new_worker())
            wait_until(lambda: leasing(workers[-1]), timeout=60, message="the new worker")

        context = f"(seed {seed}, killed {kills})"
        wait_all_finished(http, server.url, context, timeout=90)
        ran = executions(file_root) + recorder.calls

    jobs = all_jobs(http, server.url)
    assert len(jobs) == len(tag_of) == ROUNDS * (FILE_JOBS_PER_ROUND + SLOW_JOBS_PER_ROUND)
    statuses = Counter(job["status"] for job in jobs)
    assert statuses == {"succeeded": len(jobs)}, context
    assert set(ran) == set(tag_of.values()), f"a job never ran, or an unknown run {context}"

    lease_expired = duplicated = 0
    for job in jobs:
        history = attempts(http, server.url, job["id"])
        outcomes = Counter(attempt["outcome"] for attempt in history)
        assert outcomes["succeeded"] == 1, (job, history, context)
        # Nothing else happened to these jobs than their worker being killed (while
        # it ran them, or while its lease request waited: released, not counted).
        assert set(outcomes) <= {"succeeded", "lease_expired", "released"}, (job, history)
        assert job["attempts"] == len(history) - outcomes["released"], (job, history, context)
        runs = ran[tag_of[job["id"]]]
        # A job runs again only after an attempt whose worker died with the lease.
        assert runs <= 1 + outcomes["lease_expired"], (job, history, runs, context)
        lease_expired += outcomes["lease_expired"]
        duplicated += runs > 1
    # The kills hit jobs in flight (else this test proved nothing).
    assert lease_expired >= 1, f"no kill interrupted a job {context}"
    print(f"{lease_expired} attempts lost with their worker, {duplicated} jobs ran twice {context}")
