package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/tooling/stack"
)

// with is `stack with SERVICE... -- COMMAND [ARG...]`: the Makefile's way
// to run tests against real services. Services the environment already
// names are used as they are, so that a target run from another (make
// test runs make deploy-test) shares its services.
func with(ctx context.Context, cfg stack.Config, args []string, stderr io.Writer) (code int) {
	i := slices.Index(args, "--")
	if i < 1 || i == len(args)-1 {
		fmt.Fprintln(stderr, "usage: stack [flags] with SERVICE... -- COMMAND [ARG...]")
		return 2
	}
	var names []string
	for _, name := range args[:i] {
		switch {
		case name == stack.Kafka && os.Getenv(testenv.KafkaBrokers) != "":
		case name == stack.Valkey && os.Getenv(testenv.ValkeyAddr) != "":
		default:
			names = append(names, name)
		}
	}
	command := args[i+1:]
	if len(names) == 0 {
		return execute(command, nil, stderr)
	}
	s, err := stack.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer func() {
		if err := s.Down(); err != nil {
			fmt.Fprintln(stderr, err)
			code = max(code, 1)
		}
	}()
	if err := s.Up(ctx, names...); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	env, err := s.Env()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return execute(command, env, stderr)
}

// execute runs command with env added to the environment and returns its
// exit code. A terminal's Ctrl-C reaches the command itself (it is in this
// process group); SIGTERM is passed on. Either way this waits for the
// command, so that the services stop only after it has.
func execute(command, env []string, stderr io.Writer) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGTERM {
				_ = cmd.Process.Signal(sig)
			}
		case err := <-done:
			var exit *exec.ExitError
			switch {
			case err == nil:
				return 0
			case errors.As(err, &exit):
				return max(exit.ExitCode(), 1)
			default:
				fmt.Fprintln(stderr, "stack:", err)
				return 1
			}
		}
	}
}
