// Test-only: a reverse proxy that adds "Authorization: Bearer $AUTH_TOKEN"
// to every request that has no Authorization of its own (subscription
// callbacks carry their wake's token) and forwards it to $AUTH_TARGET,
// streaming bodies both ways (long-poll, SSE). The Host header is kept, so
// the URLs the server builds (Location, callback_url, jwks_url) name the
// proxy. conformance/run.sh puts it in front of a server
// with access control on, so that the conformance suite (which sends no
// token) runs with every request authenticated. Listens on 127.0.0.1 and
// prints its port.
import http from "node:http"

const target = new URL(process.env.AUTH_TARGET)
const token = process.env.AUTH_TOKEN

const server = http.createServer((req, res) => {
  const headers = { ...req.headers }
  headers.authorization ??= `Bearer ${token}`
  const up = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
    (ur) => {
      res.writeHead(ur.statusCode, ur.rawHeaders)
      ur.pipe(res)
    }
  )
  up.on(`error`, () => res.destroy())
  res.on(`close`, () => up.destroy())
  req.pipe(up)
})
server.keepAliveTimeout = 60_000
server.listen(0, `127.0.0.1`, () => console.log(server.address().port))
