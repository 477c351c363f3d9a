// Package rotation changes a repository's master key (KEK) while the
// repository stays in use, without re-encrypting any data: only the
// wrapped DEKs are re-wrapped. docs/rotation.md is the specification (the
// protocol, why each order matters, what recovers every crash point);
// docs/format.md gives the bytes of every object named here.
//
// A rotation has four steps. Start switches: one keyring commit adds a new
// generation for the new key as current, marks the old one retiring and
// records the rotation; from then on every new DEK is wrapped under the new
// key, and reads fall back across the generations (package keys). Run then
// re-wraps: every entry below deks/<old>/ gets a twin under the new
// generation, written into DEK packs, read back and verified; entries that
// already have a twin that opens (a late writer's, an earlier run's,
// another process's) are only checked. When every old entry has a verified
// twin, including entries that appeared after the first listing (the old
// prefix is listed again until nothing new shows up), Run retires the old
// generation in a second keyring commit and deletes its wrapped DEKs. An
// entry is deleted only after the keyring that retires its generation is
// durable.
//
// One process runs a rotation at a time: the holder of the rotation lease
// leases/rotation/<seq> (package lease), the coordinator. Other processes
// that hold both keys may Help: the re-wrap is split into 16 shards by the
// first hex digit of the DEK id, claimed with shard leases and marked done
// with markers below leases/rewrap/<rotation id>/. Markers and helpers
// only decide who does what: the coordinator checks every twin itself
// before it retires anything.
//
// Every step is idempotent and every keyring change is a compare-and-swap
// on the latest keyring, so a process killed anywhere loses nothing: the
// next process that holds the new key calls Resume (or Start with the same
// new key again) and finishes. Unfinished says whether that is needed;
// Status reports generations, lease, shards and progress.
//
// The rotation works through the per-generation operations of
// keys.Keychain (KEK, Copies, RelistPacks, IndexPack, NewGeneration,
// Adopt, Commit) and never sees key material other than through a
// keys.KEK. No error, status or log line of this package contains key
// material.
package rotation
