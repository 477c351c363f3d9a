// Command snapcrypt keeps encrypted snapshots of directory trees, mounts them
// read-only and rotates their master key online. It is a thin layer: flags,
// then a library call, then an exit code (see exitCode).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// Exit codes, documented in README.md.
const (
	exitOK       = 0
	exitFailure  = 1 // an operation failed; check: problems found
	exitUsage    = 2 // bad flags or arguments
	exitKey      = 3 // no key, a key that cannot be read, or no key matches
	exitNoRepo   = 4 // the repository does not exist
	exitDamaged  = 5 // repository bytes are corrupted or tampered with
	exitBusy     = 6 // another process holds the rotation
	exitWarnings = 7 // snapshot written, but some entries could not be read
)

type command struct {
	name, args, short string
	run               func(ctx context.Context, c *cli, args []string) error
	setup             func(fs *pflag.FlagSet, c *cli)
	noRepo            bool
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// cli holds what every command shares.
type cli struct {
	repo string
	keys []string
	// insecureHTTP allows s3:http:// to a host that is not on loopback.
	insecureHTTP bool
	json         bool
	// lease is the rotation lease lifetime of rotations this process runs.
	lease  time.Duration
	stdout io.Writer
	stderr io.Writer
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SNAPCRYPT_CPUPROFILE=FILE writes a CPU profile of the run (go tool pprof).
	if p := os.Getenv("SNAPCRYPT_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	pprof.StopCPUProfile()
	// SNAPCRYPT_MEMPROFILE=FILE writes what the run allocated, and where
	// (go tool pprof -sample_index=alloc_space).
	if p := os.Getenv("SNAPCRYPT_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	os.Exit(code)
}

func topUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: snapcrypt COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	cs := append([]*command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'snapcrypt COMMAND --help' for a command's flags, 'snapcrypt --version' for the version.")
}

// run runs the command in args. Asked for help (help, -h, --help, or a
// command's -h/--help), it prints the usage once, to stdout, and returns
// exitOK; a usage error goes to stderr with exitUsage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		topUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		topUsage(stdout)
		return exitOK
	case "--version":
		args = []string{"version"}
	}
	var cmd *command
	for _, c := range commands {
		if c.name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "snapcrypt: unknown command %q\n", args[0])
		topUsage(stderr)
		return exitUsage
	}
	c := &cli{stdout: stdout, stderr: stderr}
	fs := pflag.NewFlagSet("snapcrypt "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	if !cmd.noRepo {
		fs.StringVarP(&c.repo, "repo", "r", os.Getenv("SNAPCRYPT_REPO"), "repository: a directory, or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] (env SNAPCRYPT_REPO)")
		fs.BoolVar(&c.insecureHTTP, "insecure-http", false, "allow an s3:http:// repository on a host that is not this machine (names, sizes and requests travel unencrypted)")
		var def []string
		if k := os.Getenv("SNAPCRYPT_KEY"); k != "" {
			def = []string{k}
		}
		fs.StringArrayVarP(&c.keys, "key", "k", def, "key spec: file:PATH, passfile:PATH, env:NAME, cmd:COMMAND, passcmd:COMMAND, awskms:KEY or a path; repeatable (env SNAPCRYPT_KEY)")
	}
	if cmd.setup != nil {
		cmd.setup(fs, c)
	}
	// pflag calls Usage itself when it meets -h or --help, then returns
	// ErrHelp; the usage is printed here instead, once, to stdout.
	fs.Usage = func() {}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(stdout, "usage: snapcrypt %s [flags] %s\n\n%s\n\nflags:\n%s", cmd.name, cmd.args, cmd.short, fs.FlagUsages())
			return exitOK
		}
		fmt.Fprintf(stderr, "snapcrypt %s: %v\n", cmd.name, err)
		return exitUsage
	}
	err := cmd.run(ctx, c, fs.Args())
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "snapcrypt %s: %v\n", cmd.name, err)
	}
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run 'snapcrypt %s --help' for usage.\n", cmd.name)
	}
	return code
}

// errReported marks an error whose message was printed already; exitError
// carries an exit code for it.
var errReported = errors.New("reported")

type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return exitError{code, err} }

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return classify(err)
}
