// Access control through the official client: tokens in `headers`, signed
// read URLs in `params`, and the errors the client surfaces for 401/403.
//
// run.sh starts the server with --auth-hmac-secret (DURASTREAM_AUTH_SECRET
// here) and --anonymous all:interop-ts/** (so the other suites run without
// tokens); streams under interop-ts-auth/ need a token. Tokens and signed
// URLs are made here with node:crypto, as a Node backend would, from the
// formats the README documents: an independent implementation of both.

import assert from "node:assert/strict"
import { createHmac, randomUUID } from "node:crypto"
import { test } from "node:test"
import { DurableStream, stream } from "@durable-streams/client"
import { BACKOFF, BASE_URL, STREAM_PREFIX, collect, waitUntil } from "./helpers.mjs"

const SECRET = process.env.DURASTREAM_AUTH_SECRET ?? ``
const skip = SECRET === `` ? `DURASTREAM_AUTH_SECRET not set (the server was not started with access control)` : false
const NO_RETRY = { ...BACKOFF, maxRetries: 0 }

const b64url = (b) => Buffer.from(b).toString(`base64url`)

/** An HS256 JWT with the "ds" claim. */
function token(ds, { expIn = 3600 } = {}) {
  const header = b64url(JSON.stringify({ alg: `HS256`, typ: `JWT` }))
  const payload = b64url(JSON.stringify({ sub: `interop-ts`, exp: Math.floor(Date.now() / 1000) + expIn, ds }))
  const sig = createHmac(`sha256`, SECRET).update(`${header}.${payload}`).digest(`base64url`)
  return `${header}.${payload}.${sig}`
}

/** The query parameters of a signed read URL of path (README, "Signed read URLs"). */
function signedParams(path, expires) {
  const urlKey = createHmac(`sha256`, SECRET).update(`durastream/auth/url-secret/v1`).digest()
  const key = createHmac(`sha256`, urlKey).update(`durastream/stream/read-url/v1`).digest()
  const signature = createHmac(`sha256`, key).update(`read\n${path}.${expires}`).digest(`base64url`)
  return { expires: String(expires), signature }
}

function authUrl(name) {
  const path = `interop-ts-auth/${name}-${randomUUID().slice(0, 8)}`
  return { path, url: `${BASE_URL}${STREAM_PREFIX}${path}` }
}

async function status(promise) {
  try {
    await promise
    return 200
  } catch (err) {
    return err.status ?? err.cause?.status ?? String(err)
  }
}

test(`a token in headers: create, append, catch-up, long-poll and SSE`, { skip }, async () => {
  const { path, url } = authUrl(`rw`)
  const headers = { Authorization: `Bearer ${token({ create: [path], append: [path], read: [path] })}` }
  const h = await DurableStream.create({ url, contentType: `text/plain`, headers, backoffOptions: BACKOFF })
  await h.append(`one `)
  const res = await stream({ url, live: false, headers, backoffOptions: BACKOFF })
  assert.equal(await res.text(), `one `)

  let want = `one `
  for (const live of [`long-poll`, `sse`]) {
    const ac = new AbortController()
    try {
      const r = await stream({ url, live, headers, signal: ac.signal, backoffOptions: BACKOFF })
      const st = collect(r, `text`)
      await waitUntil(() => st.text === want || st.error, 5000, `${live}: catch-up`)
      await h.append(`${live} `)
      want += `${live} `
      await waitUntil(() => st.text === want || st.error, 5000, `${live}: the live append`)
      assert.equal(st.error, undefined)
    } finally {
      ac.abort()
    }
  }
})

test(`no token, a bad token, or a token without the grant: 401 / 403 through the client`, { skip }, async () => {
  const { path, url } = authUrl(`deny`)
  const admin = { Authorization: `Bearer ${token({ create: [`**`], read: [`**`] })}` }
  await DurableStream.create({ url, contentType: `text/plain`, headers: admin, backoffOptions: BACKOFF })

  assert.equal(await status(DurableStream.create({ url: authUrl(`x`).url, contentType: `text/plain`, backoffOptions: NO_RETRY })), 401)
  const readOnly = { Authorization: `Bearer ${token({ read: [path] })}` }
  const h = new DurableStream({ url, headers: readOnly, backoffOptions: NO_RETRY })
  assert.equal(await status(h.append(`x`)), 403)
  const expired = { Authorization: `Bearer ${token({ read: [path] }, { expIn: -3600 })}` }
  assert.equal(await status(stream({ url, live: false, headers: expired, backoffOptions: NO_RETRY })), 401)
  const forged = { Authorization: `Bearer ${token({ read: [path] }).slice(0, -3)}AAA` }
  assert.equal(await status(stream({ url, live: false, headers: forged, backoffOptions: NO_RETRY })), 401)
  const other = { Authorization: `Bearer ${token({ read: [`interop-ts-auth/elsewhere`] })}` }
  assert.equal(await status(stream({ url, live: false, headers: other, backoffOptions: NO_RETRY })), 403)
  const res = await stream({ url, live: false, headers: admin, backoffOptions: BACKOFF })
  assert.equal(await res.text(), ``, `refused appends left the stream empty`)
})

test(`a signed read URL (params) reads one stream, catch-up and SSE, and nothing else`, { skip }, async () => {
  const { path, url } = authUrl(`signed`)
  const admin = { Authorization: `Bearer ${token({ create: [path], append: [path] })}` }
  const h = await DurableStream.create({ url, contentType: `text/plain`, headers: admin, backoffOptions: BACKOFF })
  await h.append(`signed `)
  const params = signedParams(path, Math.floor(Date.now() / 1000) + 300)
  const res = await stream({ url, live: false, params, backoffOptions: BACKOFF })
  assert.equal(await res.text(), `signed `)

  const ac = new AbortController()
  try {
    const r = await stream({ url, live: `sse`, params, signal: ac.signal, backoffOptions: BACKOFF })
    const st = collect(r, `text`)
    await h.append(`live`)
    await waitUntil(() => st.text === `signed live` || st.error, 5000, `SSE through a signed URL`)
  } finally {
    ac.abort()
  }

  const other = authUrl(`signed-other`)
  assert.equal(await status(stream({ url: other.url, live: false, params, backoffOptions: NO_RETRY })), 401)
  const expired = signedParams(path, Math.floor(Date.now() / 1000) - 1)
  assert.equal(await status(stream({ url, live: false, params: expired, backoffOptions: NO_RETRY })), 401)
  const w = new DurableStream({ url, params, backoffOptions: NO_RETRY })
  assert.equal(await status(w.append(`x`)), 403)
})
