// The real durablefetch client (DurableFetchClient 0.1.0) against
// durastream's durablefetch API, over TLS on loopback. run.sh sets:
//   DF_HOST               host:port of durastream's --fetch-addr
//   UPSTREAM_CERT/_KEY    certificate and key of the upstream (127.0.0.2)
//   NODE_EXTRA_CA_CERTS   the test CA
// The sequence follows durablefetch's own sdk.test.ts: delete, in-progress,
// a single event, a reader that leaves, replay + follow, the whole
// response, completion, delete and refetch; then what durastream adds:
// credentials and bodies reach the upstream, non-2xx is not kept, a failed
// upstream is visible as a body error, offsets, CORS, and access control:
// the server grants fetch of https://127.0.0.2:*/* (one path segment) to
// anonymous callers; /private/... needs the token in DF_TOKEN, sent as
// Durable-Fetch-Token through fetch's init headers.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import fs from 'node:fs'
import { randomUUID } from 'node:crypto'
import { DurableFetchClient } from 'durablefetch'

const dfHost = process.env.DF_HOST
assert.ok(dfHost, 'DF_HOST is not set (run through run.sh)')
const df = new DurableFetchClient({ durablefetchHost: dfHost })

// ---- the upstream: an https server on 127.0.0.2 ----------------------------

const hits = new Map() // path?query -> requests
const seen = new Map() // path?query -> { method, body, authorization }
const cancelled = new Map() // path?query -> upstream responses closed before their end
const tokensSeen = new Set() // path?query of requests that carried Durable-Fetch-Token
const upstream = https.createServer(
  { cert: fs.readFileSync(process.env.UPSTREAM_CERT), key: fs.readFileSync(process.env.UPSTREAM_KEY) },
  async (req, res) => {
    hits.set(req.url, (hits.get(req.url) ?? 0) + 1)
    const chunks = []
    for await (const c of req) chunks.push(c)
    seen.set(req.url, {
      method: req.method,
      body: Buffer.concat(chunks).toString(),
      authorization: req.headers.authorization ?? null,
    })
    if (req.headers['durable-fetch-token'] !== undefined) tokensSeen.add(req.url)
    const u = new URL(req.url, 'https://upstream')
    // /private/... serves what /... does; only a token grants it (run.sh).
    switch (u.pathname.replace(/^\/private\//, '/')) {
      case '/sse': {
        // durablefetch's /durablefetch-example-stream-sse, faster
        const n = Number(u.searchParams.get('n') ?? '5')
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-example': 'test' })
        let count = 0
        const timer = setInterval(() => {
          if (count >= n) {
            res.end('data: [DONE]\n\n')
            clearInterval(timer)
            return
          }
          count++
          res.write(`data: ${JSON.stringify({ number: count })}\n\n`)
        }, 120)
        res.on('close', () => {
          clearInterval(timer)
          if (!res.writableFinished) cancelled.set(req.url, (cancelled.get(req.url) ?? 0) + 1)
        })
        return
      }
      case '/echo':
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ method: req.method, body: Buffer.concat(chunks).toString() }))
        return
      case '/flaky':
        if (hits.get(req.url) === 1) {
          res.writeHead(500, { 'content-type': 'text/plain' })
          res.end('boom')
        } else {
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.end('ok')
        }
        return
      case '/broken':
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: {"number":1}\n\n')
        setTimeout(() => res.destroy(), 200)
        return
    }
    res.writeHead(404)
    res.end()
  },
)
await new Promise((resolve, reject) => {
  upstream.once('error', reject)
  upstream.listen(0, '127.0.0.2', resolve)
})
after(() => {
  upstream.closeAllConnections()
  upstream.close()
})
const origin = `https://127.0.0.2:${upstream.address().port}`
const run = randomUUID()
const sseUrl = `${origin}/sse?n=5&randomId=${run}`
const path = (url) => url.slice(origin.length)

// ---- helpers -------------------------------------------------------------

// readEvents reads SSE events (their data lines) from a response body until
// it ends, `max` events have come, or `ms` elapse. It returns the events,
// whether the body ended cleanly, and the error that ended it, if any.
async function readEvents(res, { max = Infinity, ms = 15000 } = {}) {
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  const events = []
  let buf = ''
  let timer
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timeout: true }), ms)
  })
  try {
    while (events.length < max) {
      let r
      try {
        r = await Promise.race([reader.read(), timeout])
      } catch (error) {
        return { events, done: false, error }
      }
      if (r.timeout) return { events, done: false }
      if (r.done) return { events, done: true }
      buf += decoder.decode(r.value, { stream: true })
      let i
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n')
        events.push(data)
      }
    }
    return { events, done: false }
  } finally {
    clearTimeout(timer)
    reader.releaseLock()
  }
}

const numbers = (n) => Array.from({ length: n }, (_, i) => JSON.stringify({ number: i + 1 }))

async function waitFor(what, cond, ms = 10000) {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const idle = { inProgress: false, activeConnections: 0, chunksStored: 0, completed: false }

// ---- durablefetch's own sequence ----------------------------------------------

test('delete of a URL with nothing stored succeeds', async () => {
  const r = await df.delete(sseUrl)
  assert.equal(r.success, true)
  assert.equal(typeof r.message, 'string')
})

test('in-progress of a URL never fetched', async () => {
  assert.deepEqual(await df.isInProgress(sseUrl), idle)
})

test('a single event, as raw text', async () => {
  const res = await df.fetch(`${origin}/sse?n=1&randomId=${run}`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'text/event-stream')
  assert.match(res.headers.get('durable-fetch-id') ?? '', /^[0-9a-f-]{36}$/)
  assert.equal(await res.text(), 'data: {"number":1}\n\ndata: [DONE]\n\n')
})

test('a first reader leaves after two events', async () => {
  const ac = new AbortController()
  const res = await df.fetch(sseUrl, { signal: ac.signal })
  assert.equal(res.status, 200)
  const { events } = await readEvents(res, { max: 2 })
  ac.abort()
  assert.deepEqual(events, numbers(2))
})

test('in progress while the upstream streams', async () => {
  const s = await df.isInProgress(sseUrl)
  assert.equal(s.inProgress, true)
  assert.equal(s.completed, false)
  assert.ok(s.chunksStored >= 1, `chunksStored ${s.chunksStored}`)
  assert.equal(typeof s.activeConnections, 'number')
})

test('a second reader replays from the first event and follows', async () => {
  const ac = new AbortController()
  const res = await df.fetch(sseUrl, { signal: ac.signal })
  const { events } = await readEvents(res, { max: 4 })
  ac.abort()
  assert.deepEqual(events, numbers(4))
})

test('a third reader gets the whole response, once each', async () => {
  const res = await df.fetch(sseUrl)
  const r = await readEvents(res)
  assert.equal(r.done, true, `body ended with ${r.error}`)
  assert.deepEqual(r.events, [...numbers(5), '[DONE]'])
})

test('completed, and the upstream was called once', async () => {
  const s = await waitFor('completion', async () => {
    const s = await df.isInProgress(sseUrl)
    return s.completed && s.activeConnections === 0 && s
  })
  assert.equal(s.inProgress, false)
  assert.equal(hits.get(path(sseUrl)), 1)
})

test('a finished response is replayed whole', async () => {
  const res = await df.fetch(sseUrl)
  const want = numbers(5).map((d) => `data: ${d}\n\n`).join('') + 'data: [DONE]\n\n'
  assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(want)))
  assert.equal(await res.text(), want)
  assert.equal(hits.get(path(sseUrl)), 1)
})

test('delete, then the next fetch calls the upstream again', async () => {
  const r = await df.delete(sseUrl)
  assert.deepEqual(r, { success: true, message: 'Storage cleared' })
  assert.deepEqual(await df.isInProgress(sseUrl), idle)
  const ac = new AbortController()
  const res = await df.fetch(sseUrl, { signal: ac.signal })
  const { events } = await readEvents(res, { max: 1 })
  ac.abort()
  assert.deepEqual(events, numbers(1))
  assert.equal(hits.get(path(sseUrl)), 2)
  // delete stops the running upstream fetch
  assert.equal((await df.delete(sseUrl)).success, true)
  assert.deepEqual(await df.isInProgress(sseUrl), idle)
  await waitFor('the upstream request to be cancelled', () => cancelled.get(path(sseUrl)) === 1)
})

// ---- what durastream adds --------------------------------------------------------

test('method, body and Authorization reach the upstream; the response is kept', async () => {
  const url = `${origin}/echo?id=${run}`
  const res = await df.fetch(url, {
    method: 'POST',
    body: JSON.stringify({ prompt: 'hi' }),
    headers: { authorization: 'Bearer t0k3n', 'content-type': 'application/json' },
  })
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { method: 'POST', body: '{"prompt":"hi"}' })
  assert.deepEqual(seen.get(path(url)), { method: 'POST', body: '{"prompt":"hi"}', authorization: 'Bearer t0k3n' })
  // Another caller (no credentials) gets the stored response; no new call.
  const again = await df.fetch(url, { method: 'POST' })
  assert.deepEqual(await again.json(), { method: 'POST', body: '{"prompt":"hi"}' })
  assert.equal(hits.get(path(url)), 1)
})

test('a non-2xx answer is passed through and not kept', async () => {
  const url = `${origin}/flaky?id=${run}`
  const first = await df.fetch(url)
  assert.equal(first.status, 500)
  assert.equal(await first.text(), 'boom')
  const second = await df.fetch(url)
  assert.equal(second.status, 200)
  assert.equal(await second.text(), 'ok')
  assert.equal(hits.get(path(url)), 2)
})

test('an upstream that fails mid-body: the body ends with an error, not complete', async () => {
  const url = `${origin}/broken?id=${run}`
  for (let i = 0; i < 2; i++) {
    const res = await df.fetch(url)
    assert.equal(res.status, 200)
    const r = await readEvents(res)
    assert.deepEqual(r.events, numbers(1))
    assert.equal(r.done, false, 'the body ended as if complete')
    assert.ok(r.error, 'the body hung instead of failing')
  }
  const s = await df.isInProgress(url)
  assert.equal(s.inProgress, false)
  assert.equal(s.completed, false)
  assert.equal(hits.get(path(url)), 1)
})

test('Durable-Fetch-Offset resumes the body at a byte offset', async () => {
  const url = `${origin}/sse?n=3&randomId=${run}`
  const full = await (await df.fetch(url)).text()
  const res = await df.fetch(url, { headers: { 'durable-fetch-offset': '19' } })
  assert.equal(res.headers.get('durable-fetch-offset'), '19')
  assert.equal(await res.text(), full.slice(19))
})

test('CORS preflight and headers as durablefetch sends them', async () => {
  const res = await fetch(`https://${dfHost}/${origin.slice(8)}/sse`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
  })
  assert.equal(res.status, 204)
  assert.equal(res.headers.get('access-control-allow-origin'), '*')
  assert.equal(res.headers.get('access-control-allow-methods'), 'GET, POST, PUT, DELETE, OPTIONS, HEAD, PATCH')
  assert.equal(res.headers.get('access-control-expose-headers'), '*')
})

test('bad input to /in-progress is a 400 with a message', async () => {
  const res = await fetch(`https://${dfHost}/in-progress`, { method: 'POST', body: 'not json' })
  assert.equal(res.status, 400)
  assert.match(await res.text(), /url/)
})

test('access control: /private needs a token in Durable-Fetch-Token, which never reaches the upstream', async () => {
  const url = `${origin}/private/sse?n=2&id=${run}`
  const refused = await df.fetch(url)
  assert.equal(refused.status, 401)
  assert.match(refused.headers.get('www-authenticate') ?? '', /^Bearer/)
  await refused.text()
  const wrong = await df.fetch(url, { headers: { 'Durable-Fetch-Token': 'not-a-token' } })
  assert.equal(wrong.status, 401)
  await wrong.text()
  assert.equal(hits.get(path(url)), undefined, 'refused requests never reach the upstream')

  const res = await df.fetch(url, { headers: { 'Durable-Fetch-Token': process.env.DF_TOKEN } })
  assert.equal(res.status, 200)
  const r = await readEvents(res)
  assert.deepEqual(r.events, [...numbers(2), '[DONE]'])
  assert.equal(r.done, true)
  assert.equal(hits.get(path(url)), 1)
  assert.equal(tokensSeen.has(path(url)), false, 'the token went upstream')
  // The client's isInProgress and delete send no headers: with access
  // control on they are refused (a 401 the client reports as invalid JSON).
  await assert.rejects(df.isInProgress(url), /invalid JSON/)
})
