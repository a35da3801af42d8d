// Shared helpers for the TypeScript-client interop tests (run them with run.sh).
//
// Every test talks to a real `durastream serve` process whose base URL is in
// DURASTREAM_URL, through the official client @durable-streams/client (pinned
// in package.json). Each test uses its own stream path with a random suffix.

import { createHash, randomUUID } from "node:crypto"
import { setTimeout as sleep } from "node:timers/promises"
import { DurableStream } from "@durable-streams/client"

export { sleep }

export const BASE_URL = (() => {
  const u = process.env.DURASTREAM_URL
  if (!u) {
    throw new Error(
      `DURASTREAM_URL is not set: run the suite with interop/ts/run.sh ` +
        `(or point DURASTREAM_URL at a running durastream server)`
    )
  }
  return u.replace(/\/+$/, ``)
})()

export const STREAM_PREFIX = process.env.DURASTREAM_STREAM_PREFIX ?? `/v1/stream/`

// The client retries network errors and 5xx forever by default. A few quick
// retries are enough against a local server, and a test then fails with the
// real error instead of running into its timeout.
export const BACKOFF = {
  initialDelay: 50,
  maxDelay: 500,
  multiplier: 1.5,
  maxRetries: 3,
}

/** A fresh stream URL: interop-ts/<name>-<time>-<random>. */
export function uniqueUrl(name) {
  const suffix = `${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`
  return `${BASE_URL}${STREAM_PREFIX}interop-ts/${name}-${suffix}`
}

/** Create a stream at a fresh URL and return its handle. */
export async function createStream(name, contentType, extra = {}) {
  return DurableStream.create({
    url: uniqueUrl(name),
    contentType,
    backoffOptions: BACKOFF,
    ...extra,
  })
}

/**
 * Resolve/reject with `promise`, or reject after `ms` with a message naming
 * what we were waiting for. Use it on every wait that depends on the server.
 */
export function within(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms
    )
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Poll `cond` every `intervalMs` until it is true, or fail after `ms`. */
export async function waitUntil(cond, ms, what, intervalMs = 5) {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    }
    await sleep(intervalMs)
  }
}

export function sha256(bytes) {
  return createHash(`sha256`).update(bytes).digest(`hex`)
}

export function concatBytes(chunks) {
  return new Uint8Array(Buffer.concat(chunks.map((c) => Buffer.from(c))))
}

/** 0x00, 0x01, ..., 0xFF. */
export function allByteValues() {
  return Uint8Array.from({ length: 256 }, (_, i) => i)
}

/**
 * Compare two byte arrays and fail with a short, useful message (lengths,
 * hashes, first differing index) rather than a multi-megabyte diff.
 */
export function assertBytesEqual(assert, got, want, what = `bytes`) {
  const g = Buffer.from(got.buffer, got.byteOffset, got.byteLength)
  const w = Buffer.from(want.buffer, want.byteOffset, want.byteLength)
  if (g.equals(w)) return
  let i = 0
  while (i < g.length && i < w.length && g[i] === w[i]) i++
  assert.fail(
    `${what} differ: got ${g.length} bytes (sha256 ${sha256(g)}), ` +
      `want ${w.length} bytes (sha256 ${sha256(w)}); first difference at ` +
      `index ${i} (got ${g[i] ?? `EOF`}, want ${w[i] ?? `EOF`})`
  )
}

/** True for the client's "stream not found" errors (FetchError or DurableStreamError). */
export function isNotFound(err) {
  return err != null && (err.status === 404 || err.code === `NOT_FOUND`)
}

/**
 * A fetch wrapper for the client's `fetch` option that records every request
 * (method, live mode, offset, final status) and how many are still waiting
 * for their response headers (a parked long-poll shows up there).
 */
export function recordingFetch(base = globalThis.fetch) {
  const log = []
  let inFlight = 0
  const f = async (input, init) => {
    const url = new URL(typeof input === `string` || input instanceof URL ? input : input.url)
    const entry = {
      method: init?.method ?? `GET`,
      live: url.searchParams.get(`live`),
      offset: url.searchParams.get(`offset`),
      status: undefined,
    }
    log.push(entry)
    inFlight++
    try {
      const r = await base(input, init)
      entry.status = r.status
      return r
    } catch (e) {
      entry.status = `error: ${e?.name ?? e}`
      throw e
    } finally {
      inFlight--
    }
  }
  f.log = log
  f.inFlight = () => inFlight
  return f
}

/**
 * Subscribe to a StreamResponse and collect what it delivers.
 * kind: "json" (items), "text" (string) or "bytes" (Uint8Array chunks).
 * The returned object is updated as batches arrive; `done`/`error` reflect
 * the session's `closed` promise.
 */
export function collect(res, kind) {
  const st = {
    items: [],
    text: ``,
    chunks: [],
    batches: [],
    offset: undefined,
    upToDate: false,
    streamClosed: false,
    done: false,
    error: undefined,
    get bytes() {
      return concatBytes(this.chunks)
    },
  }
  const meta = (b) => {
    st.batches.push({ offset: b.offset, upToDate: b.upToDate, streamClosed: b.streamClosed })
    st.offset = b.offset
    st.upToDate = b.upToDate
    st.streamClosed = st.streamClosed || b.streamClosed
  }
  if (kind === `json`) {
    res.subscribeJson((b) => {
      st.items.push(...b.items)
      meta(b)
    })
  } else if (kind === `text`) {
    res.subscribeText((b) => {
      st.text += b.text
      meta(b)
    })
  } else if (kind === `bytes`) {
    res.subscribeBytes((b) => {
      if (b.data.length > 0) st.chunks.push(b.data)
      meta(b)
    })
  } else {
    throw new Error(`unknown kind ${kind}`)
  }
  st.closed = res.closed.then(
    () => {
      st.done = true
    },
    (e) => {
      st.error = e
      st.done = true
    }
  )
  return st
}
