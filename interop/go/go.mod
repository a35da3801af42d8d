module github.com/durastream/durastream/interop/go

go 1.26

require github.com/durable-streams/durable-streams/packages/client-go v0.1.0
