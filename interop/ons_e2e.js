// End to end through a RocketRaft cluster with ali-ons (a pure JavaScript RocketMQ 4.x client
// from npm): sends <count> messages with tags and keys, consumes them all with a push consumer
// in clustering mode, then finds each by key with QUERY_MESSAGE on <brokerAddr>.
// Usage: node ons_e2e.js <namesrv host:port> <brokerAddr host:port> <topic> <count>
//        [<accessKey> <secretKey>]  (sign every request, for a cluster with ACL on)
// Prints one JSON line: {"sent":n,"consumed":n,"found":n}.
'use strict';
const { Producer, Consumer, Message } = require('ali-ons');
const RemotingCommand = require('ali-ons/lib/protocol/command/remoting_command');
const MessageDecoder = require('ali-ons/lib/message/message_decoder');
const ConsumeFromWhere = require('ali-ons/lib/consumer/consume_from_where');
const ByteBuffer = require('byte');

const QUERY_MESSAGE = 12;
const quiet = { info() {}, warn() {}, debug() {}, error: console.error };
// Only used to look NameServers up over HTTP, which nameSrv makes unnecessary.
const common = { httpclient: {}, logger: quiet };

function deadline(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());
}

async function main() {
  const [nameSrv, brokerAddr, topic, countText, accessKey, secretKey] = process.argv.slice(2);
  const count = Number(countText);
  // ali-ons signs every request as RocketMQ's AclClientRPCHook does when given keys.
  const keys = accessKey ? { accessKey, secretKey } : {};
  const key = i => `key-${i}`;

  const producer = new Producer({ ...common, ...keys, nameSrv, producerGroup: 'PG_interop' });
  await producer.ready();
  let sent = 0;
  for (let i = 0; i < count; i++) {
    const msg = new Message(topic, i % 2 ? 'TagB' : 'TagA', Buffer.from(`body-${i}`));
    msg.keys = [key(i)];
    const r = await producer.send(msg);
    if (r.sendStatus !== 'SEND_OK') throw new Error(`send ${i}: ${JSON.stringify(r)}`);
    sent++;
  }

  const consumer = new Consumer({
    ...common,
    ...keys,
    nameSrv,
    consumerGroup: 'CG_interop',
    consumeFromWhere: ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
    rebalanceInterval: 1000,
  });
  const seen = new Set();
  let wrongBody = 0;
  const all = new Promise(resolve => {
    consumer.subscribe(topic, 'TagA || TagB', async msg => {
      const k = msg.keys;
      if (msg.body.toString() !== `body-${k.slice(4)}`) wrongBody++;
      seen.add(k);
      if (seen.size === count) resolve();
    });
  });
  consumer.on('error', err => console.error(err && err.stack || err));
  await Promise.race([all, deadline(60000, `consumed ${seen.size} of ${count}`)]);
  await consumer.close();
  if (wrongBody) throw new Error(`${wrongBody} messages had the wrong body`);

  let found = 0;
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const request = RemotingCommand.createRequestCommand(QUERY_MESSAGE, {
      topic, key: key(i), maxNum: 32, beginTimestamp: 0, endTimestamp: now + 60000,
    });
    const response = await producer._mqClient.invoke(brokerAddr, request, 3000);
    if (response.code !== 0) continue;
    const msgs = MessageDecoder.decodes(ByteBuffer.wrap(response.body));
    if (msgs.some(m => m.keys === key(i) && m.body.toString() === `body-${i}`)) found++;
  }
  await producer.close();
  process.stdout.write(JSON.stringify({ sent, consumed: seen.size, found }) + '\n');
}

main().then(() => process.exit(0), err => {
  console.error(err && err.stack || err);
  process.exit(1);
});
