//go:build !durastream_unsafe_nowalsync

package engine

// skipWALSync is false: the committer syncs the commit log before it
// acknowledges. Only the durastream_unsafe_nowalsync build (the power-loss
// torture's negative control) sets it.
const skipWALSync = false
