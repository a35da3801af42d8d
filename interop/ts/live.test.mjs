// Live reads through @durable-streams/client: a checkpointing long-poll
// subscriber that is stopped and resumed while a writer keeps appending;
// closure observed by long-poll and SSE readers; deletion during a live read.

import assert from "node:assert/strict"
import { test } from "node:test"
import { StreamClosedError, stream } from "@durable-streams/client"
import {
  BACKOFF,
  collect,
  createStream,
  isNotFound,
  recordingFetch,
  sleep,
  waitUntil,
  within,
} from "./helpers.mjs"

const T = { timeout: 30_000 }

test(`long-poll subscriber checkpoints, stops and resumes while a writer appends: no gap, no duplicate`, T, async () => {
  const h = await createStream(`lp-checkpoint`, `application/json`)
  const N = 150

  // Writer: single appends with short pauses, and some bursts that the
  // client batches into one POST.
  let writerError
  let writerDone = false
  const writer = (async () => {
    let i = 0
    while (i < N) {
      if (i % 25 === 10) {
        const burst = []
        for (let k = 0; k < 5 && i < N; k++, i++) burst.push(h.append(JSON.stringify({ i })))
        await Promise.all(burst)
      } else {
        await h.append(JSON.stringify({ i }))
        i++
      }
      if (i % 3 === 0) await sleep(2)
    }
  })().then(
    () => {
      writerDone = true
    },
    (e) => {
      writerError = e
      writerDone = true
    }
  )

  const rec = recordingFetch()
  const got = []
  const checkpoints = []
  let checkpoint = `-1`
  let sessions = 0
  let resumedWhileWriting = 0 // sessions started while the writer was still appending
  const deadline = Date.now() + 20_000
  while (got.length < N) {
    assert.equal(writerError, undefined, `writer failed: ${writerError}`)
    assert.ok(Date.now() < deadline, `reader did not get all ${N} items in time (got ${got.length})`)
    sessions++
    if (!writerDone) resumedWhileWriting++
    const ac = new AbortController()
    const res = await stream({
      url: h.url,
      offset: checkpoint,
      live: `long-poll`,
      signal: ac.signal,
      fetch: rec,
      backoffOptions: BACKOFF,
    })
    // Each session takes at most 4 batches, then is stopped; the next one
    // resumes from the offset of the last batch it processed.
    const sessionDone = new Promise((resolve, reject) => {
      let batches = 0
      const unsubscribe = res.subscribeJson(async (batch) => {
        got.push(...batch.items.map((x) => x.i))
        checkpoint = batch.offset
        checkpoints.push(batch.offset)
        batches++
        if (batches >= 4 || got.length >= N) {
          unsubscribe()
          resolve()
        }
      })
      res.closed.then(resolve, reject)
    })
    try {
      await within(sessionDone, 10_000, `a reader session (${sessions}) to deliver 4 batches`)
    } finally {
      ac.abort()
      res.cancel()
    }
  }
  await within(writer, 10_000, `the writer to finish`)
  assert.equal(writerError, undefined, `writer failed: ${writerError}`)

  assert.deepStrictEqual(got, Array.from({ length: N }, (_, i) => i), `union of all batches`)
  assert.ok(sessions >= 3, `the reader was stopped and resumed (sessions: ${sessions})`)
  assert.ok(resumedWhileWriting >= 2, `the reader resumed while the writer was appending (${resumedWhileWriting} of ${sessions} sessions)`)
  for (let k = 1; k < checkpoints.length; k++) {
    assert.ok(checkpoints[k] >= checkpoints[k - 1], `checkpoints never go backwards: ${checkpoints[k - 1]} -> ${checkpoints[k]}`)
  }
  assert.ok(rec.log.some((e) => e.live === `long-poll`), `long-poll requests were made`)
  assert.ok(rec.log.every((e) => e.live === null || e.live === `long-poll`), `no SSE requests`)
  assert.ok(rec.log.every((e) => e.status === 200 || e.status === 204 || String(e.status).startsWith(`error: Abort`)),
    `unexpected statuses: ${JSON.stringify(rec.log.filter((e) => e.status !== 200 && e.status !== 204))}`)

  // And the stream holds each item exactly once.
  const all = await (await h.stream({ live: false })).json()
  assert.deepStrictEqual(all.map((x) => x.i), Array.from({ length: N }, (_, i) => i))
})

test(`close is observed by a long-poll reader and an SSE reader after all data`, T, async () => {
  const h = await createStream(`close`, `application/json`)
  for (let i = 0; i < 5; i++) await h.append(JSON.stringify({ i }))

  const ac = new AbortController()
  const lpFetch = recordingFetch()
  const lp = await stream({ url: h.url, live: `long-poll`, signal: ac.signal, fetch: lpFetch, backoffOptions: BACKOFF })
  const sse = await stream({ url: h.url, live: `sse`, signal: ac.signal, backoffOptions: BACKOFF })
  try {
    const lpSt = collect(lp, `json`)
    const sseSt = collect(sse, `json`)
    await waitUntil(() => lpSt.items.length === 5 && sseSt.items.length === 5, 5_000, `both readers to catch up`)
    // Let both readers park in a live request (long-poll wait / open SSE).
    await waitUntil(() => lpFetch.inFlight() > 0, 5_000, `the long-poll reader to park`)
    await sleep(200)

    await h.append(JSON.stringify({ i: 5 }))
    await h.append(JSON.stringify({ i: 6 }))
    const { finalOffset } = await h.close({ body: JSON.stringify({ final: true }) })
    assert.ok(finalOffset, `close returns the final offset`)

    // Both sessions end by themselves (no cancel) within a few seconds.
    await within(Promise.all([lpSt.closed, sseSt.closed]), 5_000, `both readers to observe the closure`)
    // Client quirk (0.2.7): StreamResponse.closed resolves as soon as the
    // session stops fetching, which can be before the subscriber callback has
    // been given the last batch (the one with streamClosed). Wait for it too.
    await waitUntil(() => lpSt.streamClosed && sseSt.streamClosed, 2_000, `the final (streamClosed) batch to reach both subscribers`)
    const want = [0, 1, 2, 3, 4, 5, 6].map((i) => ({ i })).concat([{ final: true }])
    for (const [name, res, st] of [[`long-poll`, lp, lpSt], [`sse`, sse, sseSt]]) {
      assert.equal(st.error, undefined, `${name} reader failed: ${st.error}`)
      assert.deepStrictEqual(st.items, want, `${name} reader items`)
      assert.equal(res.streamClosed, true, `${name}: StreamResponse.streamClosed`)
      assert.equal(st.streamClosed, true, `${name}: a batch had streamClosed`)
      assert.equal(st.batches.at(-1).streamClosed, true, `${name}: the last batch has streamClosed`)
      assert.equal(res.offset, finalOffset, `${name}: ends at the final offset`)
    }

    // The closed stream rejects appends: 409 with Stream-Closed: true and the
    // final offset (PROTOCOL.md 5.2). Client quirk (0.2.7): its retrying fetch
    // wrapper turns every 4xx into a FetchError before the code that would
    // build a StreamClosedError runs, so append() and close({ body }) reject
    // with a FetchError carrying the response headers; accept either.
    for (const attempt of [
      () => h.append(JSON.stringify({ late: true })),
      () => h.close({ body: JSON.stringify({ late: true }) }),
    ]) {
      const err = await attempt().then(() => null, (e) => e)
      assert.ok(err, `appending to a closed stream must fail`)
      if (err instanceof StreamClosedError) {
        assert.equal(err.finalOffset, finalOffset)
      } else {
        assert.equal(err.status, 409, `append after close: ${err}`)
        assert.equal(err.headers?.[`stream-closed`], `true`, `409 carries Stream-Closed: true`)
        assert.equal(err.headers?.[`stream-next-offset`], finalOffset, `409 carries the final offset`)
      }
    }
    // Close without a body is idempotent.
    assert.equal((await h.close()).finalOffset, finalOffset)
    const head = await h.head()
    assert.equal(head.streamClosed, true)
    assert.equal(head.offset, finalOffset)

    // Late joiners: reading a closed stream live ends at EOF by itself, from
    // the start and from the final offset.
    for (const live of [`long-poll`, `sse`]) {
      for (const offset of [`-1`, finalOffset]) {
        const late = await stream({ url: h.url, live, offset, signal: ac.signal, backoffOptions: BACKOFF })
        const st = collect(late, `json`)
        await within(st.closed, 5_000, `a late ${live} reader from ${offset} to end`)
        await waitUntil(() => st.streamClosed || st.error, 2_000, `the late ${live} reader's streamClosed batch`)
        assert.equal(st.error, undefined, `late ${live} reader from ${offset}: ${st.error}`)
        assert.deepStrictEqual(st.items, offset === `-1` ? want : [], `late ${live} reader from ${offset}`)
        assert.equal(late.streamClosed, true, `late ${live} reader from ${offset}: streamClosed`)
      }
    }
  } finally {
    ac.abort()
    lp.cancel()
    sse.cancel()
  }
})

for (const live of [`long-poll`, `sse`]) {
  test(`delete during a live ${live} read ends the reader with "not found" within seconds`, T, async () => {
    const h = await createStream(`delete-${live}`, `application/json`)
    await h.append(JSON.stringify({ x: 1 }))

    const ac = new AbortController()
    const rec = recordingFetch()
    const res = await stream({ url: h.url, live, signal: ac.signal, fetch: rec, backoffOptions: BACKOFF })
    try {
      const st = collect(res, `json`)
      await waitUntil(() => st.items.length === 1 && st.upToDate, 5_000, `the reader to catch up`)
      if (live === `long-poll`) {
        await waitUntil(() => rec.inFlight() > 0, 5_000, `the long-poll reader to park`)
      } else {
        await waitUntil(() => rec.log.some((e) => e.live === `sse` && e.status === 200), 5_000, `the SSE connection`)
      }
      await sleep(200)

      const t0 = Date.now()
      await h.delete()
      await within(st.closed, 5_000, `the ${live} reader to end after DELETE`)
      const took = Date.now() - t0
      // PROTOCOL.md 5.4: in-flight reads may end with 404 on subsequent
      // requests after deletion; the client reports that as an error.
      assert.ok(st.error, `the ${live} session ended with an error (not a silent EOF) after ${took} ms`)
      assert.ok(isNotFound(st.error), `the error is "not found": ${st.error}`)
      assert.equal(res.streamClosed, false, `deletion is not closure`)
      assert.deepStrictEqual(st.items, [{ x: 1 }])
      assert.equal((await h.head()).exists, false)
    } finally {
      ac.abort()
      res.cancel()
    }
  })
}
