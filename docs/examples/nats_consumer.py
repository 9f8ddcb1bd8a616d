"""Follow SOP's events in NATS JetStream: `python3 nats_consumer.py [SERVER] [COUNT]`."""

import asyncio
import json
import sys

import nats


async def follow(server: str, count: int) -> None:
    nc = await nats.connect(server)
    js = nc.jetstream()
    # A durable consumer: after a restart it goes on after the last event it acknowledged.
    sub = await js.pull_subscribe("sop.events.>", durable="auditor", stream="SOP_EVENTS")
    seen = 0
    while seen < count:
        try:
            batch = await sub.fetch(100, timeout=5)
        except nats.errors.TimeoutError:
            continue
        for msg in batch:
            event = json.loads(msg.data)  # entries and signed checkpoints, in log order
            print(msg.headers["Nats-Msg-Id"], event["type"])  # `<origin>/<log index>` or
            # `<origin>/checkpoint/<size>` for a checkpoint (`sop.checkpoint.v1`)
            await msg.ack()
            seen += 1
    await nc.close()


server = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
asyncio.run(follow(server, int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000_000))
