//go:build durastream_unsafe_nowalsync

package engine

// skipWALSync: this build is the power-loss torture's negative control. Its
// commit-log committer acknowledges appends without syncing them, so a power
// cut must lose acknowledged writes (crashtest TestHTTPPowerLossNegativeControl).
// Never ship it.
const skipWALSync = true
