// Package apt installs the Debian packages a stack needs when they are
// missing: Java and Maven for the Kafka broker, redis-server for Valkey.
// Only root can; anyone else gets told what to install.
package apt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// ErrNotRoot reports that the packages could not be installed because this
// is not root on a machine with apt-get.
var ErrNotRoot = errors.New("not root with apt-get")

// Install runs apt-get update and apt-get install for pkgs, after writing
// why to log. The commands' output goes to log too.
func Install(ctx context.Context, log io.Writer, why string, pkgs ...string) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return ErrNotRoot
	}
	fmt.Fprintf(log, "%s: installing %s with apt-get\n", why, strings.Join(pkgs, " "))
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq"}, pkgs...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}
