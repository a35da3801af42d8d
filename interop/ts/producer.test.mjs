// Idempotent producers (PROTOCOL.md 5.2.1) through the client's
// IdempotentProducer: retried batches are deduplicated, a stale epoch is
// fenced with the client's StaleEpochError, a new epoch takes over, and each
// message is in the stream exactly once.

import assert from "node:assert/strict"
import { test } from "node:test"
import { IdempotentProducer, StaleEpochError } from "@durable-streams/client"
import { createStream } from "./helpers.mjs"

const T = { timeout: 20_000 }

/**
 * A fetch for the producer that simulates lost acknowledgements: every
 * producer POST is sent, its response thrown away, and the identical request
 * sent again (what a client does when it retries after a timeout). The second
 * response is returned. Every response is logged.
 */
function retryingFetch(log) {
  return async (input, init) => {
    const send = async (attempt) => {
      const r = await fetch(input, init)
      const h = new Headers(init?.headers)
      log.push({
        attempt,
        epoch: h.get(`producer-epoch`),
        seq: h.get(`producer-seq`),
        status: r.status,
        respEpoch: r.headers.get(`producer-epoch`),
        respSeq: r.headers.get(`producer-seq`),
        offset: r.headers.get(`stream-next-offset`),
      })
      return r
    }
    const first = await send(`first`)
    await first.arrayBuffer()
    return send(`retry`)
  }
}

/** Logs producer requests; with retryClose, close requests are sent twice like above. */
function loggingFetch(log, { retryClose = false } = {}) {
  return async (input, init) => {
    const h = new Headers(init?.headers)
    const isClose = h.get(`stream-closed`) === `true`
    const send = async () => {
      const r = await fetch(input, init)
      log.push({
        epoch: h.get(`producer-epoch`),
        seq: h.get(`producer-seq`),
        close: isClose,
        status: r.status,
        respEpoch: r.headers.get(`producer-epoch`),
        respClosed: r.headers.get(`stream-closed`),
        offset: r.headers.get(`stream-next-offset`),
      })
      return r
    }
    if (retryClose && isClose) await (await send()).arrayBuffer()
    return send()
  }
}

test(`idempotent producer: retries deduplicated, stale epoch fenced, new epoch works, each message once`, T, async () => {
  const h = await createStream(`producer`, `application/json`)
  const id = `interop-producer-1`
  const errors = []
  const onError = (e) => errors.push(e)

  // --- epoch 0: three batches, each sent twice (lost ack + retry) ----------
  const retryLog = []
  const p0 = new IdempotentProducer(h, id, { epoch: 0, lingerMs: 0, maxInFlight: 1, fetch: retryingFetch(retryLog), onError })
  p0.append(JSON.stringify({ m: 0 }))
  await p0.flush()
  p0.append(JSON.stringify({ m: 1 }))
  p0.append(JSON.stringify({ m: 2 })) // same batch as m:1
  await p0.flush()
  p0.append(JSON.stringify({ m: 3 }))
  await p0.flush()
  assert.deepStrictEqual(errors, [])
  // PROTOCOL.md 5.2.1: 200 for a new (epoch, seq), 204 for a duplicate; both
  // echo Producer-Epoch and report the highest accepted Producer-Seq.
  assert.deepStrictEqual(
    retryLog.map((e) => [e.attempt, e.epoch, e.seq, e.status, e.respEpoch, e.respSeq]),
    [
      [`first`, `0`, `0`, 200, `0`, `0`],
      [`retry`, `0`, `0`, 204, `0`, `0`],
      [`first`, `0`, `1`, 200, `0`, `1`],
      [`retry`, `0`, `1`, 204, `0`, `1`],
      [`first`, `0`, `2`, 200, `0`, `2`],
      [`retry`, `0`, `2`, 204, `0`, `2`],
    ]
  )
  assert.equal(p0.epoch, 0)
  assert.equal(p0.nextSeq, 3)

  // A restarted process that lost its state and replays from seq 0 in the
  // same epoch: all duplicates.
  const replayLog = []
  const replay = new IdempotentProducer(h, id, { epoch: 0, lingerMs: 0, maxInFlight: 1, fetch: loggingFetch(replayLog), onError })
  replay.append(JSON.stringify({ m: 0 }))
  await replay.flush()
  replay.append(JSON.stringify({ m: 1 }))
  replay.append(JSON.stringify({ m: 2 }))
  await replay.flush()
  await replay.detach()
  assert.deepStrictEqual(errors, [])
  assert.deepStrictEqual(replayLog.map((e) => [e.seq, e.status]), [[`0`, 204], [`1`, 204]])

  // --- epoch 1 fences epoch 0 -----------------------------------------------
  const p1Log = []
  const p1 = new IdempotentProducer(h, id, { epoch: 1, lingerMs: 0, maxInFlight: 1, fetch: loggingFetch(p1Log), onError })
  p1.append(JSON.stringify({ m: 4 }))
  await p1.flush()
  assert.deepStrictEqual(errors, [])
  assert.deepStrictEqual(p1Log.map((e) => [e.epoch, e.seq, e.status]), [[`1`, `0`, 200]])

  // The zombie (epoch 0) is rejected: 403 -> StaleEpochError with the
  // server's current epoch.
  p0.append(JSON.stringify({ zombie: true }))
  await p0.flush()
  assert.equal(errors.length, 1, `one error reported: ${errors}`)
  assert.ok(errors[0] instanceof StaleEpochError, `got ${errors[0]}`)
  assert.equal(errors[0].currentEpoch, 1)
  const zombieClose = await p0.close().then(() => null, (e) => e)
  assert.ok(zombieClose instanceof StaleEpochError, `zombie close is fenced too: ${zombieClose}`)
  errors.length = 0

  // --- a new epoch (current + 1) takes over ------------------------------------
  const p2Log = []
  const p2 = new IdempotentProducer(h, id, { epoch: 2, lingerMs: 0, maxInFlight: 1, fetch: loggingFetch(p2Log), onError })
  p2.append(JSON.stringify({ m: 5 }))
  await p2.flush()
  p2.append(JSON.stringify({ m: 6 }))
  await p2.flush()
  assert.deepStrictEqual(errors, [])
  assert.deepStrictEqual(p2Log.map((e) => [e.epoch, e.seq, e.status]), [[`2`, `0`, 200], [`2`, `1`, 200]])

  // ... and epoch 1 is now stale as well.
  p1.append(JSON.stringify({ zombie: 1 }))
  await p1.flush()
  assert.equal(errors.length, 1)
  assert.ok(errors[0] instanceof StaleEpochError)
  assert.equal(errors[0].currentEpoch, 2)
  errors.length = 0

  // Auto-claim (PROTOCOL.md 5.2.1): an ephemeral producer starting at epoch 0
  // is told the current epoch (403) and claims current + 1.
  const p3Log = []
  const p3 = new IdempotentProducer(h, id, { epoch: 0, autoClaim: true, lingerMs: 0, fetch: loggingFetch(p3Log, { retryClose: true }), onError })
  p3.append(JSON.stringify({ m: 7 }))
  await p3.flush()
  assert.deepStrictEqual(errors, [])
  assert.equal(p3.epoch, 3)
  assert.deepStrictEqual(p3Log.map((e) => [e.epoch, e.seq, e.status, e.respEpoch]), [[`0`, `0`, 403, `2`], [`3`, `0`, 200, `3`]])

  // Close through the producer with a final message. The close request is
  // sent twice (lost ack): the retry matches the (id, epoch, seq) that closed
  // the stream, so it is a duplicate: 204 with Stream-Closed: true.
  p3Log.length = 0
  const closed = await p3.close(JSON.stringify({ m: 8 }))
  assert.ok(closed.finalOffset)
  assert.deepStrictEqual(
    p3Log.map((e) => [e.epoch, e.seq, e.close, e.status, e.respClosed, e.offset]),
    [
      [`3`, `1`, true, 200, `true`, closed.finalOffset],
      [`3`, `1`, true, 204, `true`, closed.finalOffset],
    ]
  )
  const head = await h.head()
  assert.equal(head.streamClosed, true)
  assert.equal(head.offset, closed.finalOffset)

  // --- every message exactly once, in order ----------------------------------
  const res = await h.stream({ live: false })
  assert.deepStrictEqual(await res.json(), [0, 1, 2, 3, 4, 5, 6, 7, 8].map((m) => ({ m })))
  assert.equal(res.streamClosed, true)
})
