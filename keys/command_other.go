//go:build !unix

package keys

import (
	"os"
	"os/exec"
)

// startOwnGroup does nothing where there are no Unix process groups.
func startOwnGroup(cmd *exec.Cmd) {}

// killGroup kills p only: there are no Unix process groups here.
func killGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	return p.Kill()
}
