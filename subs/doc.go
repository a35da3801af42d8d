// Package subs keeps subscriptions (PROTOCOL.md sections 6 and 7): durable
// cursors over sets of streams (a glob pattern and explicit paths) that
// wake workers when the streams have data past their cursors, by signed
// webhook or by a wake event in a pull-wake stream, with generations,
// scoped tokens and leases fencing stale workers.
//
// The server calls BeforeCreate before it creates a stream (matching
// subscriptions link it durably first) and its done func after, and
// Notify after every create, append and delete (a lock-free lookup for
// unlinked streams); it maps the __ds/subscriptions routes onto Put, Get,
// Delete, AddStreams, RemoveStream, Callback, Claim, Ack and Release. A
// link follows one incarnation of its stream: one deleted, expired or
// created again starts over from its beginning (manager.go, observe).
//
// State lives in engine streams under __ds/subs (state.go), so it is as
// durable as the data it describes; delivery is at least once (wake.go).
package subs
