package testutil

import (
	"os/exec"
	"syscall"
	"time"
)

// Proc is a started child process that tests stop or kill by its pid, never
// by name.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// Watch follows cmd, which must already be started, until it exits.
func Watch(cmd *exec.Cmd) *Proc {
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p
}

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM and waits; after 5 s it kills the process.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}
