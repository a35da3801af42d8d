// Catch-up (live: false) reads through @durable-streams/client: binary and
// JSON round trips, and resuming from a saved offset.

import assert from "node:assert/strict"
import { randomBytes } from "node:crypto"
import { test } from "node:test"
import { DurableStream, stream } from "@durable-streams/client"
import {
  BACKOFF,
  allByteValues,
  assertBytesEqual,
  concatBytes,
  createStream,
  uniqueUrl,
} from "./helpers.mjs"

const T = { timeout: 20_000 }

test(`binary stream: appends incl. all 256 byte values read back byte-exact (live: false)`, T, async () => {
  const h = await createStream(`binary`, `application/octet-stream`)
  assert.match(h.contentType ?? ``, /^application\/octet-stream/)

  const all = allByteValues()
  const chunks = [
    all,
    new Uint8Array([0x00]),
    new Uint8Array([0xff, 0xfe, 0x00, 0x0d, 0x0a, 0x0d]),
    Uint8Array.from(all).reverse(),
    new Uint8Array(randomBytes(4099)),
    new Uint8Array([0x0a]),
    new TextEncoder().encode(`data: not an SSE line\n\n`),
  ]
  // One POST per append (each awaited before the next).
  for (const c of chunks) await h.append(c)

  // Appends fired without awaiting are batched by the client into fewer
  // POSTs; order must still be preserved.
  const pipelined = Array.from({ length: 40 }, (_, i) =>
    Uint8Array.from({ length: (i % 7) + 1 }, (_, j) => (i * 31 + j * 7) & 0xff)
  )
  await Promise.all(pipelined.map((c) => h.append(c)))

  const want = concatBytes([...chunks, ...pipelined])

  const res = await h.stream({ live: false })
  const got = await res.body()
  assertBytesEqual(assert, got, want, `binary stream contents`)
  assert.equal(res.upToDate, true)
  assert.equal(res.streamClosed, false)

  // The offset the read ended at is the stream's tail (HEAD).
  const head = await h.head()
  assert.equal(head.exists, true)
  assert.equal(res.offset, head.offset)

  // Reading again from that offset returns nothing.
  const again = await h.stream({ offset: res.offset, live: false })
  assert.equal((await again.body()).length, 0)
})

test(`JSON stream: objects, arrays and scalars read back item-exact with .json()`, T, async () => {
  // PUT with an initial JSON array body: the server flattens one level, so
  // this creates three messages: {"seed":1}, [1,2], [[3]].
  const h = await createStream(`json`, `application/json`, {
    body: JSON.stringify([{ seed: 1 }, [1, 2], [[3]]]),
  })

  const singles = [
    { a: 1, nested: { b: [1, 2, { c: null }] } },
    [1, 2, 3], // the client sends [[1,2,3]]; the server stores one message [1,2,3]
    [[`deep`]],
    [],
    `a string with "quotes", \\ backslashes, \n newlines and unicode: héllo 日本語 🎉`,
    42,
    -0.5,
    true,
    null,
    { emptyObj: {}, emptyArr: [], big: 9007199254740991 },
  ]
  for (const v of singles) await h.append(JSON.stringify(v))

  // Appends fired together are batched by the client into one POST whose body
  // is a JSON array; the server flattens it into separate messages.
  const batched = Array.from({ length: 25 }, (_, i) => ({ batch: i, arr: [i, [i]] }))
  await Promise.all(batched.map((v) => h.append(JSON.stringify(v))))

  const want = [{ seed: 1 }, [1, 2], [[3]], ...singles, ...batched]

  const res = await h.stream({ live: false })
  assert.match(res.contentType ?? ``, /^application\/json/)
  const items = await res.json()
  assert.deepStrictEqual(items, want)
  assert.equal(res.upToDate, true)

  // Item-exact also via the standalone stream() function.
  const res2 = await stream({ url: h.url, live: false, backoffOptions: BACKOFF })
  assert.deepStrictEqual(await res2.json(), want)
})

test(`resume from a saved offset returns only newer data`, T, async () => {
  const url = uniqueUrl(`resume`)
  const h = await DurableStream.create({ url, contentType: `application/json`, backoffOptions: BACKOFF })
  await h.append(JSON.stringify({ n: 1 }))
  await h.append(JSON.stringify({ n: 2 }))

  const first = await stream({ url, offset: `-1`, live: false, backoffOptions: BACKOFF })
  assert.deepStrictEqual(await first.json(), [{ n: 1 }, { n: 2 }])
  const saved = first.offset
  assert.ok(saved && saved !== `-1` && saved !== `now`, `a real offset was returned: ${saved}`)

  await h.append(JSON.stringify({ n: 3 }))
  await h.append(JSON.stringify([{ n: 4 }, { n: 5 }])) // one message: an array

  // A fresh handle, as a restarted process would have.
  const h2 = new DurableStream({ url, backoffOptions: BACKOFF })
  const second = await h2.stream({ offset: saved, live: false })
  assert.deepStrictEqual(await second.json(), [{ n: 3 }, [{ n: 4 }, { n: 5 }]])
  // Offsets are lexicographically sortable (PROTOCOL.md section 8).
  assert.ok(second.offset > saved, `offset advanced: ${saved} -> ${second.offset}`)

  // Nothing after the new offset; offset stays put.
  const third = await h2.stream({ offset: second.offset, live: false })
  assert.deepStrictEqual(await third.json(), [])
  assert.equal(third.offset, second.offset)

  // offset=now skips existing data and reports the tail.
  const now = await h2.stream({ offset: `now`, live: false })
  assert.deepStrictEqual(await now.json(), [])
  assert.equal(now.offset, second.offset)

  // The saved offset is still valid and still yields exactly the same data.
  const replay = await h2.stream({ offset: saved, live: false })
  assert.deepStrictEqual(await replay.json(), [{ n: 3 }, [{ n: 4 }, { n: 5 }]])
})
