// Fetches a topic route from a NameServer with ali-ons (a pure JavaScript RocketMQ 4.x
// client from npm) and prints it as JSON. Usage: node ons_route.js <host:port> <topic>
'use strict';
const MQClientAPI = require('ali-ons/lib/mq_client_api');

async function main() {
  const [nameSrv, topic] = process.argv.slice(2);
  const client = new MQClientAPI({
    nameSrv,
    // Only used to look NameServers up over HTTP, which nameSrv makes unnecessary.
    httpclient: {},
    logger: { info() {}, warn() {}, debug() {}, error: console.error },
  });
  await client.ready();
  const route = await client.getTopicRouteInfoFromNameServer(topic, 3000);
  process.stdout.write(JSON.stringify(route) + '\n');
  await client.close();
}

main().then(() => process.exit(0), err => {
  console.error(err && err.stack || err);
  process.exit(1);
});
