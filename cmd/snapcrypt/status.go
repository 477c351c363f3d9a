package main

import (
	"context"
	"fmt"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/rotation"
)

type statusGeneration struct {
	ID      string    `json:"id"`
	State   string    `json:"state"`
	KDF     string    `json:"kdf"`
	Created time.Time `json:"created"`
	DEKs    int       `json:"wrapped_deks"`
	Held    bool      `json:"key_supplied"`
	// Slots are the generation's key slots by id and kind, never a secret.
	Slots []keys.SlotInfo `json:"slots"`
}

type statusJSON struct {
	ID            string `json:"repository_id"`
	Location      string `json:"location"`
	FormatVersion int    `json:"format_version"`
	// Compression is the default compression of snapshots ("off" in
	// format version 1).
	Compression  string             `json:"compression"`
	KeyringEpoch uint64             `json:"keyring_epoch"`
	Current      string             `json:"current_generation"`
	Generations  []statusGeneration `json:"generations"`
	Rotation     *keys.Rotation     `json:"rotation"`
	Unfinished   bool               `json:"rotation_unfinished"`
	Lease        *lease.Lease       `json:"rotation_lease"`
	// Authenticated is false for a keyring never committed in format
	// version 2 (its next commit, a rotation, authenticates it).
	Authenticated bool     `json:"keyring_authenticated"`
	Problems      []string `json:"keyring_problems"`
	// RecordError says why the host's keyring record could not be kept
	// (docs/security.md, "Rollback"); empty when it was.
	RecordError string `json:"keyring_record_error,omitempty"`
	Snapshots   int    `json:"snapshots"`
	Packs       int    `json:"packs"`
	Bytes       int64  `json:"repository_bytes"`
	// BlobBytes is the plaintext of every indexed blob and what it
	// takes in packs.
	BlobBytes blobBytes `json:"blob_bytes"`
	// Unused is the space of packs no index names (an interrupted
	// snapshot's, or one in flight); blobs no snapshot reaches are
	// counted by check only (they need a walk).
	Unused repo.Unindexed `json:"unused"`
	// Prune is the marks of prunes that deferred their deletions (the
	// next prune finishes them) and the snapshots in flight now.
	Prune *repo.PruneState `json:"prune"`
}

type blobBytes struct {
	Plain  uint64 `json:"plain"`
	Stored uint64 `json:"stored"`
}

func runStatus(ctx context.Context, c *cli, args []string) error {
	if len(args) != 0 {
		return usagef("status takes no arguments")
	}
	r, err := c.open(ctx, repo.Options{})
	if err != nil {
		return err
	}
	u, err := r.Usage(ctx)
	if err != nil {
		return err
	}
	unused, err := r.Unindexed(ctx)
	if err != nil {
		return err
	}
	ps, err := r.PruneState(ctx)
	if err != nil {
		return err
	}
	ks, err := rotation.New(r.Keys(), rotation.Options{}).Status(ctx)
	if err != nil {
		return err
	}
	st := statusJSON{ID: r.Config().ID, Location: r.Store().Location(), FormatVersion: r.Config().Version, Compression: r.Compression().String(),
		KeyringEpoch: ks.Epoch, Current: ks.Current, Rotation: ks.Rotation, Unfinished: ks.Unfinished, Lease: ks.Lease,
		Snapshots: u.Objects["snapshots"], Packs: u.Objects["data"], Bytes: u.Total, Unused: unused, Prune: ps}
	st.BlobBytes.Plain, st.BlobBytes.Stored = r.Index().BlobBytes()
	st.Authenticated, st.Problems = r.Keys().Authenticated(), []string{}
	for _, p := range r.Keys().Problems() {
		st.Problems = append(st.Problems, p.Error())
	}
	if err := r.Keys().RecordError(); err != nil {
		st.RecordError = err.Error()
	}
	kr := r.Keys().Keyring()
	for _, g := range ks.Generations {
		slots := []keys.SlotInfo{}
		if kg := kr.Generation(g.ID); kg != nil {
			slots = kg.SlotInfos()
		}
		st.Generations = append(st.Generations, statusGeneration{ID: g.ID, State: string(g.State), KDF: g.KDF,
			Created: g.Created, DEKs: g.DEKs, Held: g.Held, Slots: slots})
	}
	if c.json {
		return c.printJSON(st)
	}
	w := c.stdout
	fmt.Fprintf(w, "repository %s at %s\n", st.ID, st.Location)
	fmt.Fprintf(w, "format version %d, compression %s, keyring epoch %d\n", st.FormatVersion, st.Compression, st.KeyringEpoch)
	if !st.Authenticated {
		fmt.Fprintf(w, "keyring not authenticated: it was never committed in format version 2; the next rotation authenticates it\n")
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "keyring problem: %s\n", p)
	}
	if st.RecordError != "" {
		fmt.Fprintf(w, "no host record of the keyring (rollback protection rests on the keys alone): %s\n", st.RecordError)
	}
	fmt.Fprintf(w, "key generations:\n")
	for _, g := range st.Generations {
		held := ""
		if g.Held {
			held = ", key supplied"
		}
		fmt.Fprintf(w, "  %s  %-8s  %-8s  %6d wrapped DEKs  created %s%s\n", g.ID, g.State, g.KDF, g.DEKs, g.Created.UTC().Format(time.RFC3339), held)
		for _, s := range g.Slots {
			fmt.Fprintf(w, "    key slot %s  %-10s  created %s\n", s.ID, s.Kind, s.Created.Format(time.RFC3339))
		}
	}
	if st.Rotation != nil {
		fmt.Fprintf(w, "rotation %s in progress: %v -> %s, started %s\n", st.Rotation.ID, st.Rotation.From, st.Rotation.To, st.Rotation.Started.UTC().Format(time.RFC3339))
	} else if st.Unfinished {
		fmt.Fprintf(w, "a retired generation still has wrapped DEKs: 'snapcrypt rotate' finishes the clean-up\n")
	} else {
		fmt.Fprintf(w, "no rotation in progress\n")
	}
	if st.Lease != nil {
		fmt.Fprintf(w, "rotation lease held by %s pid %d until %s\n", st.Lease.Host, st.Lease.PID, st.Lease.Expires.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "%d snapshots, %d packs, %s in all\n", st.Snapshots, st.Packs, bytesStr(uint64(st.Bytes)))
	fmt.Fprintf(w, "blobs: %s of plaintext stored in %s\n", bytesStr(st.BlobBytes.Plain), bytesStr(st.BlobBytes.Stored))
	fmt.Fprintf(w, "unused space: %d packs no index names, %s (interrupted or running snapshots; 'check' also counts blobs no snapshot reaches)\n",
		st.Unused.Packs, bytesStr(uint64(st.Unused.Bytes)))
	for _, p := range ps.Pending {
		fmt.Fprintf(w, "prune %s by %s pid %d at %s deferred: %d packs, %s, %d wrapped DEKs ('snapcrypt prune' finishes it)\n",
			p.ID[:16], p.Host, p.PID, p.Time.Format(time.RFC3339), p.Packs, bytesStr(uint64(p.Bytes)), p.DEKs)
	}
	for _, l := range ps.Writers {
		fmt.Fprintf(w, "snapshot in flight: host %s pid %d, lease until %s\n", l.Host, l.PID, l.Expires.UTC().Format(time.RFC3339))
	}
	if ps.More > 0 {
		fmt.Fprintf(w, "and %d more writer leases not read\n", ps.More)
	}
	return nil
}
