#!/usr/bin/env python3
"""End to end through a RocketRaft cluster with Apache rocketmq-client-cpp (PyPI `rocketmq`,
its librocketmq.so and a ctypes wrapper): a clustering push consumer starts first, <count>
messages with tags and keys are sent synchronously, the push consumer must get each exactly
as sent, and a pull consumer then reads every queue from offset 0 and must find them all.

Usage: python3 cpp_e2e.py <namesrv host:port> <topic> <count>
Prints one JSON line: {"sent": n, "consumed": n, "pulled": n}. Exits 1 on a failure.

Quirks of this client (see the README's interop section): it writes JSON headers only,
reports version 63 (so it gets routes in fastjson's form), sends its heartbeat enums as Java
ordinals and its push consumer always starts at the queues' end (hence it starts first and
waits for its queues before anything is sent). Its logs go to $HOME/logs/rocketmq-cpp.
"""
import json
import os
import sys
import threading
import time

from rocketmq.client import Message, Producer, PullConsumer, PushConsumer, SendStatus


def main():
    namesrv, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run = str(int(time.time() * 1000))
    bodies = {"cpp-%s-%d" % (run, i): "key-%d" % i for i in range(count)}
    got = {}
    lock = threading.Lock()

    push = PushConsumer("CG_cpp_" + run)
    push.set_namesrv_addr(namesrv)

    def on_message(msg):
        key = msg.keys.decode() if isinstance(msg.keys, bytes) else msg.keys
        with lock:
            body = msg.body.decode()
            got[body] = got.get(body, 0) + (1 if bodies.get(body) == key else 1000)

    push.subscribe(topic, on_message)
    push.start()
    # It starts at the queues' end: let it take its queues (rebalance runs at start and every
    # 20 s; the heartbeat and the first rebalance take about a second here).
    time.sleep(float(os.environ.get("CPP_SETTLE_S", "5")))

    producer = Producer("PG_cpp_" + run, timeout=5000)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    sent = 0
    for body, key in bodies.items():
        msg = Message(topic)
        msg.set_keys(key)
        msg.set_tags("TagA" if sent % 2 else "TagB")
        msg.set_body(body)
        result = producer.send_sync(msg)
        if result.status != SendStatus.OK:
            fail("send %s: %s" % (body, result.status))
        sent += 1
    producer.shutdown()

    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if len(got) >= count:
                break
        time.sleep(0.2)
    time.sleep(1)  # anything delivered twice would arrive now
    push.shutdown()
    with lock:
        wrong = [b for b, n in got.items() if n != 1]
        consumed = len([b for b in got if b in bodies])
    if wrong:
        fail("delivered more than once or with the wrong key: %s" % wrong[:5])

    pull = PullConsumer("CG_cpp_pull_" + run)
    pull.set_namesrv_addr(namesrv)
    pull.start()
    pulled = set()
    deadline = time.time() + 30
    while time.time() < deadline and len(pulled) < count:
        for msg in pull.pull(topic, expression="TagA || TagB", max_num=32):
            if msg.body.decode() in bodies:
                pulled.add(msg.body.decode())
    pull.shutdown()
    print(json.dumps({"sent": sent, "consumed": consumed, "pulled": len(pulled)}))
    sys.stdout.flush()
    # The wrapper's destructors can hang at interpreter exit: leave without running them.
    os._exit(0)


def fail(why):
    print(json.dumps({"error": why}))
    sys.stdout.flush()
    os._exit(1)


if __name__ == "__main__":
    main()
