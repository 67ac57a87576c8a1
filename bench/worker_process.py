"""`checkout-recovery worker` as its own process, for the benchmarks that measure it from outside
(memory, timers): its environment, its start, and whether a flow is asleep on its timer."""

import asyncio
import os
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.support import BIN_DIR

READY_LINE = "Worker polling"


def worker_env(
    temporal_address: str,
    data_dir: Path,
    policy: Path,
    task_queue: str,
    smtp_port: int,
    settings: dict[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment without engine or Temporal settings of its own, plus the
    worker's; `settings` names workers.settings fields (max_cached_workflows=100, ...)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CHECKOUT_RECOVERY_", "TEMPORAL_"))
    }
    env.update(
        {
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "CHECKOUT_RECOVERY_DATA_DIR": str(data_dir),
            "CHECKOUT_RECOVERY_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'store.db'}",
            "CHECKOUT_RECOVERY_POLICY": str(policy),
            "CHECKOUT_RECOVERY_TASK_QUEUE": task_queue,
            "CHECKOUT_RECOVERY_LINK_SIGNING_SECRET": "bench-link-secret",
            "CHECKOUT_RECOVERY_SMTP_HOST": "127.0.0.1",
            "CHECKOUT_RECOVERY_SMTP_PORT": str(smtp_port),
            # No metrics listener: a fixed port would collide with a local `./run dev`.
            "CHECKOUT_RECOVERY_WORKER_METRICS_ADDRESS": "",
            "CHECKOUT_RECOVERY_MAIL_FROM": "Bench Shop <recovery@shop.test>",
            "CHECKOUT_RECOVERY_SHOP_NAME": "Bench Shop",
            # A reconcile pass reads every flow: not what a worker does most of the time, and
            # not what these benchmarks measure.
            "CHECKOUT_RECOVERY_RECONCILE_INTERVAL_SECONDS": "0",
        }
    )
    env.update({f"CHECKOUT_RECOVERY_{name.upper()}": v for name, v in (settings or {}).items()})
    return env


def log_text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start the worker with its output in `log`; returns once it polls its task queue."""
    with log.open("wb") as output:
        worker = await asyncio.create_subprocess_exec(
            str(BIN_DIR / "checkout-recovery"),
            "worker",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    for _ in range(600):
        if READY_LINE in log_text(log):
            return worker
        if worker.returncode is not None:
            raise SystemExit(f"the worker exited ({worker.returncode}):\n{log_text(log)}")
        await asyncio.sleep(0.1)
    worker.kill()
    raise SystemExit(f"the worker did not start:\n{log_text(log)}")


async def stop_worker(worker: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    worker.terminate()
    try:
        await asyncio.wait_for(worker.wait(), 30)
    except TimeoutError:
        worker.kill()
        await worker.wait()


async def asleep(client: Client, workflow_id: str) -> bool:
    """Started, its first workflow task done, nothing pending: sleeping on its timer."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False  # the hand-off has not started it yet
        raise
    raw = description.raw_description
    return (
        not raw.HasField("pending_workflow_task")
        and not raw.pending_activities
        and (description.history_length or 0) > 3
    )
