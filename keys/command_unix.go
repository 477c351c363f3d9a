//go:build unix

package keys

import (
	"os"
	"os/exec"
	"syscall"
)

// startOwnGroup makes cmd the leader of a new process group, so that
// killGroup reaches everything it starts.
func startOwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends SIGKILL to the process group p leads.
func killGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	return syscall.Kill(-p.Pid, syscall.SIGKILL)
}
