module tsblock.dev/test/harness

go 1.24
