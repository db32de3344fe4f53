"""What each background job costs a gateway process in CPU per pass when there is nothing to do.

Every gateway process runs the periodic jobs of ``exchange serve`` (``Services.periodic_jobs``)
at their intervals whether or not there is work: an idle pass is the floor a worker pays, per
second, for each. This runs each job's pass on an empty migrated database (the sample partners
loaded) and prints this process's CPU per pass (``time.process_time``; PostgreSQL's own is not
counted), with the job's interval and what that comes to per second.

    .venv/bin/python bench/background_jobs.py [--passes 30]

Uses a throwaway PostgreSQL cluster from the local binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from exchange.db import migrate
from exchange.services.container import load_partners_directory, open_services
from exchange.settings import Settings
from exchange.testing.postgres import ThrowawayCluster

WARM_PASSES = 3


async def main(arguments: argparse.Namespace) -> None:
    cluster = ThrowawayCluster.start()
    try:
        await asyncio.to_thread(migrate.upgrade, cluster.url)
        settings = Settings(database_url=cluster.url, partners_dir=Path(__file__).parents[1] / "partners")
        await load_partners_directory(settings)
        print(f"background jobs benchmark: CPU of this process per idle pass, {arguments.passes} passes each")
        per_second = 0.0
        async with open_services(settings) as services:
            for job in services.periodic_jobs():
                if job.interval <= 0:  # never run (batch-mode credits, unless configured)
                    continue
                for _ in range(WARM_PASSES):  # connections made, statements compiled
                    await job.run_once()
                started = time.process_time()
                for _ in range(arguments.passes):
                    await job.run_once()
                milliseconds = (time.process_time() - started) * 1000 / arguments.passes
                per_second += milliseconds / job.interval
                print(f"  {job.name:22s} every {job.interval:>6g} s   {milliseconds:6.2f} ms a pass")
        print(f"  all of them, idle: {per_second:.1f} ms of CPU a second, per gateway process")
    finally:
        cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
