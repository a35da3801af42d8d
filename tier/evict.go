package tier

import (
	"cmp"
	"context"
	"slices"

	"github.com/durastream/durastream/engine"
)

// evict brings the local segment files within the budget (less the read
// cache's share): the coldest
// sealed segments (least recently used stream first, then oldest bytes)
// whose stored manifest lists them as verified in the bucket.
func (t *Tier) evict(ctx context.Context, all []*streamSegs) error {
	var local int64
	var cands []engine.Eviction
	var access, size []int64
	for _, ss := range all {
		st := t.streams[ss.id]
		for _, in := range ss.segs {
			local += in.FileBytes
			if in.FileBytes == 0 || !in.Sealed || st == nil || !st.stored {
				continue
			}
			if e, ok := st.segs[uint64(in.Base)]; ok && e.Len == in.Len {
				cands = append(cands, engine.Eviction{Path: ss.path, StreamID: ss.id,
					RemoteSegment: engine.RemoteSegment{Base: in.Base, Len: in.Len, Key: e.Key}})
				access = append(access, in.LastAccess)
				size = append(size, in.FileBytes)
			}
		}
	}
	t.stats.localBytes.Store(local)
	budget := t.cfg.LocalBudget
	if t.cache != nil {
		budget -= t.cache.limit // the read cache's share
	}
	if budget <= 0 || local <= budget {
		return nil
	}
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(access[a], access[b]), cmp.Compare(cands[a].Base, cands[b].Base))
	})
	var batch []engine.Eviction
	for _, i := range order {
		if local <= budget {
			break
		}
		batch = append(batch, cands[i])
		local -= size[i]
	}
	if len(batch) == 0 {
		t.log.Warn("tier: local segments exceed the budget and none is verified in the bucket yet", "local_bytes", local, "budget", budget)
		return nil
	}
	n, err := t.eng.Load().EvictSegments(ctx, batch)
	t.stats.evictions.Add(int64(n))
	return err
}
