// Retries and delays through a RocketRaft cluster with ali-ons (a pure JavaScript RocketMQ 4.x
// client from npm): a push consumer fails one message twice (ali-ons then sends it back with
// CONSUMER_SEND_MSG_BACK and gets it again through its group's retry topic) and consumes it
// the third time; a message sent with delay level 1 arrives after that level's delay.
// Usage: node ons_retry.js <namesrv host:port> <topic> <group>
// Prints one JSON line: {"deliveries":[{"reconsumeTimes":n,"atMs":t},...],"delayedAfterMs":t}
// (times in ms since the messages were sent).
'use strict';
const { Producer, Consumer, Message } = require('ali-ons');
const ConsumeFromWhere = require('ali-ons/lib/consumer/consume_from_where');

const quiet = { info() {}, warn() {}, debug() {}, error() {} };
const common = { httpclient: {}, logger: quiet };

function deadline(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());
}

async function main() {
  const [nameSrv, topic, consumerGroup] = process.argv.slice(2);
  const consumer = new Consumer({
    ...common,
    nameSrv,
    consumerGroup,
    consumeFromWhere: ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
    rebalanceInterval: 1000,
  });
  consumer.on('error', () => {}); // the two failures are reported here, on purpose
  const deliveries = [];
  let delayedAt = null;
  let sentAt = null;
  const done = new Promise(resolve => {
    consumer.subscribe(topic, '*', async msg => {
      const body = msg.body.toString();
      const atMs = Date.now() - sentAt;
      if (body === 'delayed') {
        delayedAt = atMs;
      } else if (body === 'fail-twice') {
        deliveries.push({ reconsumeTimes: msg.reconsumeTimes, atMs });
        if (deliveries.length <= 2) throw new Error('not yet');
      }
      if (delayedAt !== null && deliveries.length >= 3) resolve();
    });
  });
  await consumer.ready();

  const producer = new Producer({ ...common, nameSrv, producerGroup: 'PG_interop_retry' });
  await producer.ready();
  sentAt = Date.now();
  const failing = new Message(topic, 'TagA', Buffer.from('fail-twice'));
  const r1 = await producer.send(failing);
  const delayed = new Message(topic, 'TagA', Buffer.from('delayed'));
  delayed.delayTimeLevel = 1;
  const r2 = await producer.send(delayed);
  for (const r of [r1, r2]) {
    if (r.sendStatus !== 'SEND_OK') throw new Error(`send: ${JSON.stringify(r)}`);
  }
  await Promise.race([done, deadline(60000, `deliveries ${JSON.stringify(deliveries)}, delayed ${delayedAt}`)]);
  // Nothing more comes: the third delivery was consumed.
  await new Promise(resolve => setTimeout(resolve, 1500));
  await consumer.close();
  await producer.close();
  process.stdout.write(JSON.stringify({ deliveries, delayedAfterMs: delayedAt }) + '\n');
}

main().then(() => process.exit(0), err => {
  console.error(err && err.stack || err);
  process.exit(1);
});
