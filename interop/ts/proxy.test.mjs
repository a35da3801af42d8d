// The Durable Streams proxy protocol (PROXY_PROTOCOL.md) read through the
// official client @durable-streams/client: a proxy stream is created with
// POST /v1/proxy against a tiny local SSE upstream started here, and its
// pre-signed Location is read like any durable stream (long-poll and SSE),
// resumed from an offset, and aborted through PATCH.
//
// Needs a server started with --proxy-secret S --proxy-allow
// 'http://127.0.0.1:*/**' and DURASTREAM_PROXY_SECRET=S (run.sh does
// both); skipped when DURASTREAM_PROXY_SECRET is not set.

import assert from "node:assert/strict"
import { createServer } from "node:http"
import { after, before, test } from "node:test"
import { stream } from "@durable-streams/client"
import { BACKOFF, BASE_URL, collect, waitUntil, within } from "./helpers.mjs"

const SECRET = process.env.DURASTREAM_PROXY_SECRET ?? ``
const skip = SECRET === `` ? `DURASTREAM_PROXY_SECRET is not set (run.sh sets it)` : false
const T = { timeout: 30_000, skip }

/** What the upstream's /sse?n=N sends. */
function sseText(n) {
  let s = ``
  for (let i = 0; i < n; i++) s += `data: token-${i}\n\n`
  return s
}

// The upstream: /sse?n=N&delay=MS sends N SSE events, MS apart, and stops
// when the proxy goes away. aborted counts requests cut off mid-response.
let upstream
let upstreamPort
let aborted = 0
before(async () => {
  if (skip) return
  upstream = createServer((req, res) => {
    const u = new URL(req.url, `http://127.0.0.1`)
    if (u.pathname !== `/sse`) {
      res.writeHead(404).end()
      return
    }
    const n = Number(u.searchParams.get(`n`) ?? 10)
    const delay = Number(u.searchParams.get(`delay`) ?? 0)
    res.writeHead(200, { "content-type": `text/event-stream`, "cache-control": `no-cache` })
    let i = 0
    let timer
    const tick = () => {
      if (i >= n) {
        res.end()
        return
      }
      res.write(`data: token-${i++}\n\n`)
      timer = setTimeout(tick, delay)
    }
    res.on(`close`, () => {
      clearTimeout(timer)
      if (i < n) aborted++
    })
    tick()
  })
  await new Promise((resolve) => upstream.listen(0, `127.0.0.1`, resolve))
  upstreamPort = upstream.address().port
})
after(async () => {
  if (!upstream) return
  upstream.closeAllConnections()
  await new Promise((resolve) => upstream.close(resolve))
})

/** POST /v1/proxy for the upstream path; returns the pre-signed URL. */
async function createProxyStream(path) {
  const r = await within(
    fetch(`${BASE_URL}/v1/proxy`, {
      method: `POST`,
      headers: {
        authorization: `Bearer ${SECRET}`,
        "upstream-url": `http://127.0.0.1:${upstreamPort}${path}`,
        "upstream-method": `GET`,
      },
    }),
    10_000,
    `POST /v1/proxy`
  )
  const body = await r.text()
  assert.equal(r.status, 201, `create: ${r.status} ${body}`)
  assert.equal(r.headers.get(`upstream-content-type`), `text/event-stream`)
  const loc = r.headers.get(`location`)
  assert.match(loc, /\/v1\/proxy\/[0-9a-f-]{36}\?expires=\d+&signature=[\w-]+$/)
  return loc
}

/** Open a client session on a proxy stream and collect its text. */
async function read(url, live, offset) {
  const ac = new AbortController()
  const res = await within(
    stream({ url, live, offset, signal: ac.signal, backoffOptions: BACKOFF }),
    10_000,
    `the first response of a ${live} read`
  )
  const st = collect(res, `text`)
  return { res, st, stop: () => (ac.abort(), res.cancel()) }
}

test(`a proxy stream followed live over long-poll and SSE arrives whole and closed`, T, async () => {
  const N = 40
  const loc = await createProxyStream(`/sse?n=${N}&delay=15`)
  const readers = await Promise.all([read(loc, `long-poll`), read(loc, `sse`)])
  try {
    for (const [i, { st }] of readers.entries()) {
      const name = i === 0 ? `long-poll` : `sse`
      await waitUntil(() => st.streamClosed || st.done, 15_000, `the ${name} reader to see the stream closed`)
      assert.equal(st.error, undefined, `${name}: ${st.error}`)
      assert.equal(st.text, sseText(N), `${name}: the whole upstream response`)
      assert.equal(st.streamClosed, true, `${name}: streamClosed`)
    }
  } finally {
    for (const r of readers) r.stop()
  }
  // A catch-up read of the finished stream, not live.
  const whole = await stream({ url: loc, live: false, backoffOptions: BACKOFF })
  assert.equal(await within(whole.text(), 10_000, `a catch-up text()`), sseText(N))
})

test(`a proxy stream resumed from a checkpoint offset: nothing lost or repeated`, T, async () => {
  const N = 30
  const loc = await createProxyStream(`/sse?n=${N}&delay=25`)
  const first = await read(loc, `sse`)
  let text, offset
  try {
    await waitUntil(() => first.st.text.length >= 5 * `data: token-0\n\n`.length, 10_000, `some tokens`)
    // text and offset are updated together by each batch.
    ;({ text, offset } = first.st)
  } finally {
    first.stop()
  }
  assert.ok(offset !== undefined && offset !== `-1`)
  const second = await read(loc, `long-poll`, offset)
  try {
    await waitUntil(() => second.st.streamClosed || second.st.done, 15_000, `the resumed reader to see the end`)
    assert.equal(second.st.error, undefined, `${second.st.error}`)
    assert.equal(text + second.st.text, sseText(N))
  } finally {
    second.stop()
  }
})

test(`a proxy stream aborted through its pre-signed URL keeps what arrived and is closed`, T, async () => {
  const N = 2000
  const loc = await createProxyStream(`/sse?n=${N}&delay=10`)
  const r = await read(loc, `sse`)
  try {
    await waitUntil(() => r.st.text.length > 0, 10_000, `the first tokens`)
    const abortedBefore = aborted
    const a = await within(fetch(`${loc}&action=abort`, { method: `PATCH` }), 10_000, `PATCH ?action=abort`)
    assert.equal(a.status, 204, `abort: ${a.status} ${await a.text()}`)
    await waitUntil(() => r.st.streamClosed || r.st.done, 10_000, `the reader to see the stream closed`)
    assert.equal(r.st.error, undefined, `${r.st.error}`)
    assert.ok(r.st.text.length > 0 && r.st.text.length < sseText(N).length, `a part of the response`)
    assert.ok(sseText(N).startsWith(r.st.text), `a prefix of the response`)
    await waitUntil(() => aborted > abortedBefore, 5_000, `the upstream request to be cut off`)
  } finally {
    r.stop()
  }
  // HEAD (service authentication) says how it ended.
  const id = new URL(loc).pathname.split(`/`).pop()
  const h = await fetch(`${BASE_URL}/v1/proxy/${id}`, { method: `HEAD`, headers: { authorization: `Bearer ${SECRET}` } })
  assert.equal(h.status, 200)
  assert.equal(h.headers.get(`stream-closed`), `true`)
  assert.equal(h.headers.get(`upstream-outcome`), `aborted`)
})
