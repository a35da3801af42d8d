// Starts the Node reference Durable Streams server (@durable-streams/server,
// pinned in package.json) file-backed, on 127.0.0.1, for benchmarks.
//
//   node server.mjs --port 4438 --data-dir /tmp/ref [--long-poll-timeout-ms 1000]
//
// Prints "listening URL" once it accepts connections; SIGINT/SIGTERM stop it.
import { DurableStreamTestServer } from "@durable-streams/server";
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "4438" },
    host: { type: "string", default: "127.0.0.1" },
    "data-dir": { type: "string" },
    "long-poll-timeout-ms": { type: "string", default: "1000" },
  },
});
if (!values["data-dir"]) {
  console.error("server.mjs: --data-dir is required (the benchmark compares file-backed servers)");
  process.exit(2);
}
mkdirSync(values["data-dir"], { recursive: true });

const server = new DurableStreamTestServer({
  port: Number(values.port),
  host: values.host,
  dataDir: values["data-dir"],
  longPollTimeout: Number(values["long-poll-timeout-ms"]),
});
const url = await server.start();
console.log(`listening ${url} data-dir ${values["data-dir"]} pid ${process.pid}`);

let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    if (stopping) process.exit(1);
    stopping = true;
    const t = setTimeout(() => process.exit(0), 5000);
    try {
      await server.stop();
    } finally {
      clearTimeout(t);
      process.exit(0);
    }
  });
}
