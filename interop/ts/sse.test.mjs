// Live reads over Server-Sent Events (live: "sse") through
// @durable-streams/client: text streams must arrive byte-exact (including
// leading spaces, empty lines and non-ASCII), binary streams via the base64
// data encoding.

import assert from "node:assert/strict"
import { randomBytes } from "node:crypto"
import { test } from "node:test"
import { stream } from "@durable-streams/client"
import {
  BACKOFF,
  allByteValues,
  assertBytesEqual,
  collect,
  concatBytes,
  createStream,
  recordingFetch,
  waitUntil,
} from "./helpers.mjs"

const T = { timeout: 30_000 }
const DELIVERY_MS = 5_000

/**
 * Open an SSE session on `h`, then append each piece and wait until the SSE
 * reader has delivered up to the new tail before appending the next one, so
 * that every piece travels in its own SSE `data` event. Returns what the
 * reader delivered for each piece, and the request log.
 */
async function appendAndFollowOverSSE(h, pieces, kind) {
  const ac = new AbortController()
  const rec = recordingFetch()
  const res = await stream({
    url: h.url,
    live: `sse`,
    signal: ac.signal,
    fetch: rec,
    backoffOptions: BACKOFF,
    // Never quietly fall back to long-poll: this test is about SSE.
    sseResilience: { maxShortConnections: 1000, logWarnings: true },
  })
  try {
    assert.equal(res.live, `sse`)
    const st = collect(res, kind)
    await waitUntil(() => st.offset !== undefined || st.done, DELIVERY_MS, `the initial catch-up`)
    const delivered = []
    let prev = 0
    for (const piece of pieces) {
      await h.append(piece)
      const tail = (await h.head()).offset
      await waitUntil(
        () => st.offset === tail || st.done,
        DELIVERY_MS,
        `SSE delivery of piece ${JSON.stringify(kind === `text` ? piece : piece.length + ` bytes`)} (tail ${tail}, reader at ${st.offset})`
      )
      assert.equal(st.error, undefined, `SSE session failed: ${st.error}`)
      assert.equal(st.done, false, `SSE session ended early`)
      if (kind === `text`) {
        delivered.push(st.text.slice(prev))
        prev = st.text.length
      } else {
        const all = st.bytes
        delivered.push(all.slice(prev))
        prev = all.length
      }
    }
    // Everything after the initial catch-up GET went over SSE.
    const live = rec.log.filter((e) => e.live !== null).map((e) => e.live)
    assert.ok(live.length >= 1, `at least one SSE request was made`)
    assert.deepStrictEqual([...new Set(live)], [`sse`], `all live requests used SSE`)
    return { st, delivered, log: rec.log }
  } finally {
    ac.abort()
    res.cancel()
  }
}

// PROTOCOL.md 5.8 + the SSE format: a data line is `data:` followed by the
// line, and an SSE parser strips exactly one space after the colon. A server
// must therefore write `data: ` + line for lines that begin with a space; the
// client strips one space as the SSE spec says. This test asserts the bytes
// that were written. (durastream before commit 5b7b444 wrote `data:` + line,
// and this test failed on " world", "  two spaces", " " and indented lines.)
// Note: a CR in a text/plain stream cannot travel over SSE as such (SSE
// parsers treat CR, LF and CRLF all as line ends), so no piece contains one.
test(
  `SSE on text/plain delivers exactly the appended text (leading spaces, blank lines, unicode)`,
  T,
  async () => {
    const h = await createStream(`sse-text`, `text/plain`)

    // PROTOCOL.md 5.2: an append with an empty body is a 400 (Bad Request),
    // so "" is not part of the stream. (The client surfaces it as a FetchError
    // with status 400.)
    await assert.rejects(h.append(``), (e) => e.status === 400)

    const pieces = [
      `Hello`,
      ` world`,
      `  two spaces`,
      ` `,
      `line1\nline2`,
      `\n\nblank lines\n`,
      `\n`,
      ` leading after newline:\n indented line\n  two`,
      `trailing spaces   `,
      `\ttab first`,
      `data: looks like an SSE field`,
      `\nevent: control\n`,
      `: looks like an SSE comment\n`,
      `id: 7\nretry: 1`,
      `héllo 日本語 🎉 \u2028\u2029 end`,
      `{"json":"in a text stream"}`,
    ]
    const { st, delivered } = await appendAndFollowOverSSE(h, pieces, `text`)
    // Per-piece first: the diff then names the piece that came out wrong.
    assert.deepStrictEqual(delivered, pieces)
    assert.equal(st.text, pieces.join(``))

    // A catch-up read (no SSE) returns the same text.
    const res = await h.stream({ live: false })
    assert.equal(await res.text(), pieces.join(``))
  }
)

test(`SSE on application/octet-stream delivers every byte value 0x00-0xFF byte-exact (base64)`, T, async () => {
  const h = await createStream(`sse-binary`, `application/octet-stream`)
  const all = allByteValues()
  const pieces = [
    all,
    new Uint8Array([0x00]), // base64 with == padding
    new Uint8Array([0xff, 0xfe]), // = padding
    new Uint8Array([0xfb, 0xff, 0xbf]), // no padding, '+' and '/' in base64
    Uint8Array.from(all).reverse(),
    new TextEncoder().encode(`data: x\n\nevent: control\r\n`),
    new Uint8Array([0x0a, 0x0a, 0x0d]),
    new Uint8Array(randomBytes(10_000)),
  ]
  const { st, delivered } = await appendAndFollowOverSSE(h, pieces, `bytes`)
  assert.equal(delivered.length, pieces.length)
  for (let i = 0; i < pieces.length; i++) {
    assertBytesEqual(assert, delivered[i], pieces[i], `SSE piece ${i}`)
  }
  assertBytesEqual(assert, st.bytes, concatBytes(pieces), `SSE stream contents`)
})
