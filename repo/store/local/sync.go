package local

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// groupSync makes writes durable with syncfs(2) on the store's file system,
// shared by every writer waiting at the same time (a group commit): one
// syncfs that starts after a writer's call covers that writer's data and
// directory entries, whatever else it covers. Many small concurrent writes
// (wrapped DEKs during a rotation) then cost a few syncs, not three fsyncs
// each.
type groupSync struct {
	root *os.File // any file on the store's file system

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // syncs started
	done    uint64 // syncs finished
	running bool
	failed  uint64 // the last sync that failed (0: none)
	err     error  // its error
}

func newGroupSync(root *os.File) *groupSync {
	g := &groupSync{root: root}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait returns once a syncfs that started after the call has finished, with
// its error.
func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	need := g.started + 1 // a sync running now may have started before our writes
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := unix.Syncfs(int(g.root.Fd()))
		g.mu.Lock()
		g.running = false
		g.done = gen
		if err != nil {
			g.failed, g.err = gen, fmt.Errorf("syncfs %s: %w", g.root.Name(), err)
		}
		g.cond.Broadcast()
	}
	if g.failed >= need {
		return g.err
	}
	return nil
}
